"""blissdata stream plugins: which are installed, and hiding them for a test.

blissdata finds plugins once, at import, through the ``blissdata`` entry-point
group (``blissdata/redis_engine/scan.py``: ``discovered_plugins``, a dict by
name) and keeps each module it loaded in ``loaded_plugins``. A stream whose
``info["plugin"]`` is in neither loads as ``MissingPluginStream`` (``kind``
None, ``plugin`` the name, everything else raises); one whose plugin class
raises while it is made (Lima2's constructor asks its conductor for a
handshake) loads as ``BrokenPluginStream``. Both are looked up at each stream
load, so a plugin can be hidden in-process, for one test, by taking it out of
both dicts; nothing else in blissdata caches it.

Whatever class wraps a stream, its raw events stay readable:
``raw_events(stream)`` wraps ``stream.event_stream`` in a plain ``Stream``.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from ..transport.blissdata_api import Stream
from ..transport.blissdata_api import scan_module as _scan_module


def installed_plugins() -> set[str]:
    """Names of the stream plugins blissdata can load here (entry points, not hidden)."""
    return set(_scan_module.discovered_plugins) | set(_scan_module.loaded_plugins)


def plugin_installed(name: str) -> bool:
    return name in installed_plugins()


@contextlib.contextmanager
def hidden_plugins(*names: str) -> Iterator[None]:
    """Within: blissdata loads streams of these plugins as if they were not installed.

    In-process, for every thread (a writer running in the test's process included);
    restored on exit. Streams loaded before keep the class they were given.
    """
    discovered = _scan_module.discovered_plugins
    loaded = _scan_module.loaded_plugins
    saved = {name: (discovered.pop(name, None), loaded.pop(name, None)) for name in names}
    try:
        yield
    finally:
        for name, (entry, module) in saved.items():
            if entry is not None:
                discovered[name] = entry
            if module is not None:
                loaded[name] = module


def raw_events(stream) -> Stream:
    """The stream's events as blissdata stores them, whatever its plugin (or its absence).

    A plain ``Stream`` over the same Redis stream: ``len()``, slicing (numpy array for
    numeric encodings, list of dicts for JSON), ``cursor()``, ``is_sealed()``.
    """
    return Stream(stream.event_stream)
