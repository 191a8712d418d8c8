"""One mapping of a virtual dataset, as every layer names it: whole frames only.

The frames are the first dimension of the virtual dataset and of the source dataset;
a mapping takes whole frames on both sides (every other dimension entirely), which is
what a Lima2 master, a MOSCA spectra file and our own frame datasets map. A mapping
that covers part of a frame is not one of these: whoever reads it leaves it to HDF5.
No h5py here: the kinds (pure) and ``io`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class VdsMapping:
    """Virtual frames ``frames[k]`` are source frames ``src_frames[k]`` of ``src_dataset``
    in ``src_file`` (as the virtual dataset names it: "." is its own file)."""

    frames: np.ndarray
    src_file: str
    src_dataset: str
    src_frames: np.ndarray
    #: the source dataset's shape as far as known: (frames, *axes before the frame, *frame)
    src_shape: tuple = ()
    #: one virtual frame's shape
    frame_shape: tuple = ()

    def __post_init__(self) -> None:
        frames = np.array(self.frames, dtype=np.int64).reshape(-1)
        src = np.array(self.src_frames, dtype=np.int64).reshape(-1)
        if len(frames) != len(src):
            raise ValueError(f"{len(frames)} virtual frames for {len(src)} source frames")
        frames.flags.writeable = src.flags.writeable = False  # frozen means frozen
        object.__setattr__(self, "frames", frames)
        object.__setattr__(self, "src_frames", src)
        object.__setattr__(self, "src_shape", tuple(int(d) for d in self.src_shape))
        object.__setattr__(self, "frame_shape", tuple(int(d) for d in self.frame_shape))

    def __len__(self) -> int:
        return len(self.frames)

    def __eq__(self, other) -> bool:
        if not isinstance(other, VdsMapping):
            return NotImplemented
        return (self.src_file, self.src_dataset, self.src_shape, self.frame_shape) == \
            (other.src_file, other.src_dataset, other.src_shape, other.frame_shape) and \
            np.array_equal(self.frames, other.frames) and np.array_equal(self.src_frames, other.src_frames)

    __hash__ = None  # type: ignore[assignment]  # numpy arrays inside: not hashable

    @classmethod
    def run(cls, first: int, count: int, src_file: str, src_dataset: str, src_first: int,
            src_shape: tuple = (), frame_shape: tuple = ()) -> "VdsMapping":
        """``count`` frames from ``first`` taken one after the other from ``src_first``."""
        return cls(np.arange(first, first + count), src_file, src_dataset,
                   np.arange(src_first, src_first + count), src_shape, frame_shape)


def squeezed(shape: tuple) -> tuple:
    """A frame's shape without its leading axes of one: a Lima2 receiver's (1, H, W)
    frame is an (H, W) frame."""
    shape = tuple(int(d) for d in shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


__all__ = ["VdsMapping", "squeezed"]
