"""A lima detector for tests and the demo: real image files, real lima streams.

Lima (the detector server) writes its own image files and BLISS publishes a
stream of JSON statuses ``{"last_index", "last_index_saved"}``; readers turn
frame numbers into file references (blissdata ``LimaStream``). This module
writes files the way lima lays them out (HDF5 with several frames per file,
or EDF through fabio) and adds such a stream to a recorded scan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import numpy as np

from ..transport import blissdata_api
from .recording import ScanRecording, StreamRecording

#: where lima puts the frames in its HDF5 files
LIMA_DATA_PATH = "/entry_0000/measurement/data"


@dataclass
class LimaDetector:
    name: str = "lima_simulator"
    #: one frame: (height, width)
    shape: tuple = (8, 10)
    dtype: str = "uint16"
    file_format: str = "hdf5"  # or "edf": BLISS 2.2.1 publishes lowercase (any case is read)
    frames_per_file: int = 2
    #: seconds per frame (BLISS: the scan's count time; ``acq_parameters/acq_expo_time``)
    expo_time: float = 0.1
    #: metres
    pixel_size: tuple = (55e-6, 55e-6)

    @property
    def channel(self) -> str:
        return f"{self.name}:image"

    @property
    def extension(self) -> str:
        return "h5" if self.file_format.upper().startswith("HDF5") else "edf"


def frames(det: LimaDetector, n: int) -> np.ndarray:
    """Deterministic, distinct frames (frame i holds values i*1000 + pixel index)."""
    pixels = np.arange(int(np.prod(det.shape))).reshape(det.shape)
    return np.stack([(i * 1000 + pixels) for i in range(n)]).astype(det.dtype)


def write_files(det: LimaDetector, images: np.ndarray, template: str, file_offset: int = 0) -> list[str]:
    """Image files as lima writes them; ``template`` has one printf field for the file number."""
    paths = []
    for i, start in enumerate(range(0, len(images), det.frames_per_file)):
        chunk = images[start:start + det.frames_per_file]
        path = template % (i + file_offset)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if det.extension == "h5":
            with h5py.File(path, "w") as f:
                f.attrs["NX_class"] = "NXroot"
                entry = f.create_group("entry_0000")
                entry.attrs["NX_class"] = "NXentry"
                inst = entry.create_group(f"instrument/{det.name}")
                inst.attrs["NX_class"] = "NXdetector"
                inst.create_dataset("data", data=chunk, chunks=(1,) + tuple(det.shape))
                meas = entry.create_group("measurement")
                meas.attrs["NX_class"] = "NXcollection"
                meas["data"] = h5py.SoftLink(f"/entry_0000/instrument/{det.name}/data")
        else:
            import fabio.edfimage  # fabio: the test extra, needed for EDF detectors only

            edf = fabio.edfimage.EdfImage(data=chunk[0])
            for frame in chunk[1:]:
                edf.append_frame(data=frame)
            edf.write(path)
        paths.append(path)
    return paths


def device_metadata(det: LimaDetector, npoints: int, images_dir: str, stage: str) -> dict:
    """``devices[<lima>]["metadata"]`` as BLISS 2.2.1 publishes it: nothing at CREATED, the
    camera's ``scan_metadata()`` at PREPARED (``controllers/lima/lima_base.py``: type,
    description, pixel sizes in metres, camera_settings), updated at the end with the
    acquisition object's ``acq_parameters`` and ``ctrl_parameters``
    (``scanning/acquisition/lima.py``; ``ScanInfo._set_device_meta`` merges by key)."""
    if stage == "created":
        return {}
    meta = {
        "type": "lima",
        "description": "Simulator, Generator",
        "x_pixel_size": float(det.pixel_size[0]),
        "y_pixel_size": float(det.pixel_size[1]),
        "x_pixel_size@units": "m",
        "y_pixel_size@units": "m",
        "camera_settings": {"mode": "GENERATOR", "nb_prefetched_frames": 1},
    }
    if stage == "final":
        meta["acq_parameters"] = {
            "acq_mode": "SINGLE", "acq_nb_frames": npoints, "acq_expo_time": det.expo_time,
            "acq_trigger_mode": "INTERNAL_TRIGGER_MULTI", "latency_time": 0.0,
            "saving_statistics_history": npoints, "saving_mode": "AUTO_FRAME",
            "saving_directory": images_dir, "saving_prefix": f"{det.name}_",
        }
        meta["ctrl_parameters"] = {
            "saving_format": "HDF5" if det.extension == "h5" else "EDF",
            "saving_frame_per_file": det.frames_per_file, "saving_suffix": f".{det.extension}",
            "saving_managed_mode": "SOFTWARE", "image_rotation": "NONE",
            "image_flip": [False, False], "image_bin": [1, 1],
            "image_roi": [0, 0, int(det.shape[1]), int(det.shape[0])],
        }
    return meta


def add_lima(rec: ScanRecording, det: LimaDetector, images_dir: str, *,
             saved: int | None = None) -> ScanRecording:
    """``rec`` with a lima detector taking one frame per point of the scan.

    ``saved`` < number of points simulates a detector that stops saving midway
    (the statuses say so, and the files hold only those frames).
    """
    rec = rec.copy()
    npoints = rec.npoints
    saved = npoints if saved is None else saved
    template = os.path.join(images_dir, f"{det.name}_%04d.{det.extension}")
    images = frames(det, npoints)
    write_files(det, images[:saved], template)
    definition = blissdata_api.LimaStream.make_definition(
        det.channel, det.dtype, list(det.shape), server_url=f"id00/limaccds/{det.name}",
        buffer_max_number=npoints, frames_per_acquisition=npoints, acquisition_offset=0,
        saving={"file_path": template, "data_path": LIMA_DATA_PATH,
                "file_format": det.file_format, "file_offset": 0,
                "frames_per_file": det.frames_per_file},
    )
    # frames are acquired before they are saved: statuses lag by one frame
    statuses = [{"last_index": i, "last_index_saved": min(i - 1, saved - 1)} for i in range(npoints)]
    statuses.append({"last_index": npoints - 1, "last_index_saved": saved - 1})
    rec.streams.append(StreamRecording(det.channel, definition.info, {"type": "json"}, statuses))
    # a ROI counter, as lima's roi_counters plugin publishes it: one value per frame
    roi = f"{det.name}:roi_counters:roi1_sum"
    rec.streams.append(StreamRecording(roi, {"dtype": "float64", "shape": []},
                                       {"type": "numeric", "dtype_str": "<f8", "shape": []},
                                       images.reshape(npoints, -1).sum(axis=1).astype("f8")))
    rec.lima_frames = {det.channel: images}
    for stage, info in (("created", rec.info_created), ("prepared", rec.info_prepared), ("final", rec.info_final)):
        dev = f"2:{det.name}"
        info["devices"][dev] = {"name": det.name, "type": "lima", "channels": [det.channel, roi],
                                "metadata": device_metadata(det, npoints, images_dir, stage)}
        info["channels"][det.channel] = {"device": dev, "display_name": "image", "dim": 2}
        info["channels"][roi] = {"device": dev, "display_name": "roi1_sum", "dim": 0}
        chain = next(iter(info["acquisition_chain"].values()))
        chain["images"] = list(chain.get("images", [])) + [det.channel]
        chain["scalars"] = list(chain.get("scalars", [])) + [roi]
        chain["devices"] = list(chain["devices"]) + [dev]
    return rec
