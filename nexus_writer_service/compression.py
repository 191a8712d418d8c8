"""The compression presets: defined here only (no h5py, so BLISS-side code can check names).

What we write ourselves (spectra, 1D/2D channels) is compressed with ``gzip`` by default:
deflate + byte shuffle, built into every HDF5 (h5py, h5dump, HDFView, MATLAB, h5web's
standard build read it without any plugin), as ESRF's writer does. ``bitshuffle-lz4``
(HDF5 filter 32008) is faster to decode and an opt-in preset (``--compression
bitshuffle-lz4``, the beamline YAML's ``compression``, per detector): readers then need
the plugin (h5py: ``import hdf5plugin``; others: ``HDF5_PLUGIN_PATH``).

0D channels are never filtered (``io.arrays.ArraySpec.filter``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

BITSHUFFLE_PLUGIN = "bitshuffle (HDF5 filter 32008; e.g. pip install hdf5plugin)"


@dataclass(frozen=True)
class Preset:
    #: the name given on the command line / in YAML (``none``: no filter)
    name: str
    #: HDF5 filters, in pipeline order: "shuffle", "deflate", "bitshuffle", "lz4"
    filters: tuple[str, ...]
    #: the filter plugin a reader needs (None: built into every HDF5)
    plugin: str | None
    #: what it is for, in messages
    summary: str


#: deflate level of ``gzip``/``deflate``: after a byte shuffle, level 1 compresses spectra nearly
#: as well as the default level 4, and faster (doc/benchmarks.md has the figures)
DEFLATE_LEVEL = 1

PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("gzip", ("shuffle", "deflate"), None, "deflate + shuffle: every HDF5 reader opens it (default)"),
    Preset("bitshuffle-lz4", ("bitshuffle", "lz4"), BITSHUFFLE_PLUGIN,
           "fast; readers need the bitshuffle plugin"),
    Preset("none", (), None, "no filter"),
    Preset("deflate", ("deflate",), None, "deflate without shuffle (BLISS's 'gzip')"),
    Preset("shuffle", ("shuffle",), None, "byte shuffle only"),
    Preset("bitshuffle", ("bitshuffle",), BITSHUFFLE_PLUGIN, "bitshuffle without LZ4; needs the plugin"),
)}

#: the writer's default: readable by every HDF5 reader
DEFAULT = "gzip"

#: other spellings of our names
ALIASES = {"": "none", "lz4-bitshuffle": "bitshuffle-lz4", "gzip-shuffle": "gzip"}

#: BLISS's compression_scheme names (SCAN_SAVING.writer_object, ESRF's blisswriter) -> ours
BLISS_SCHEMES = {"none": "none", "gzip": "deflate", "byteshuffle": "shuffle", "gzip-byteshuffle": "gzip",
                 "bitshuffle": "bitshuffle", "lz4-bitshuffle": "bitshuffle-lz4"}


def choices() -> str:
    """The main presets, for messages."""
    return "'gzip' (default: every HDF5 reader opens it), 'bitshuffle-lz4' (fast, readers need the plugin) or 'none'"


def preset(name: str | None) -> Preset:
    """The preset of a name (None, "" and "none": no filter); ValueError naming the choices."""
    key = (name or "").strip().lower()
    key = ALIASES.get(key, key)
    if key not in PRESETS:
        close = difflib.get_close_matches(key, list(PRESETS) + list(ALIASES), n=1)
        hint = f"did you mean {ALIASES.get(close[0], close[0])!r}? " if close else ""
        raise ValueError(f"{name!r} is not a compression ({hint}use {choices()})")
    return PRESETS[key]


def canonical(name: str | None) -> str:
    """Our name for a compression, "" for no filter (how datasets and settings hold it)."""
    p = preset(name)
    return "" if p.name == "none" else p.name


def check(name: str) -> str:
    """A configuration value: the name as given if it is one (ValueError otherwise)."""
    preset(name)
    return name


def required_plugins(names) -> list[str]:
    """The filter plugins a reader needs for data written with these presets (sorted, unique)."""
    return sorted({plugin for n in names if (plugin := preset(n).plugin) is not None})


__all__ = ["Preset", "PRESETS", "DEFAULT", "DEFLATE_LEVEL", "BLISS_SCHEMES", "preset", "canonical", "check",
           "required_plugins", "choices"]
