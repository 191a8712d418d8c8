"""Settings of a session writer (command line options map onto these)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import compression as compression_presets
from ..io.path_policy import PathPolicy
from ..io.space import RECOMMENDED_MB, REQUIRED_MB, SpaceRule


@dataclass
class WriterConfig:
    #: where scans without a file name (writer 'null') go (``paths.target_file``); default:
    #: the folder the writer starts in, taken when the settings are made, not at import
    base_path: str = field(default_factory=os.getcwd)
    default_path_template: str = "{base_path}/{session}/{session}_nexus.h5"
    #: readers that open the file see new points after at most this long
    flush_period: float = 0.5
    #: blocking read of new stream data, per call
    read_timeout: float = 0.5
    #: a scan that neither sends data nor changes state for this long is given up (INCOMPLETE)
    stall_timeout: float = 600.0
    #: waiting for a created scan to be prepared
    prepare_timeout: float = 600.0
    #: waiting for the target file while another process locks it
    lock_timeout: float = 10.0
    #: a sequence waits this long for its children's entries before linking them
    child_wait: float = 30.0
    #: at start, write this session's scans of the last this-many seconds that no writer
    #: finished (a crash, a restart): 0 looks back at nothing
    recover_window: float = 24 * 3600.0
    #: scans written at the same time (more wait, PENDING); a sequence and its children
    #: are written together, so keep this above the deepest nesting of sequences
    max_active_scans: int = 8
    #: scans in progress at the same time, each on a thread (more wait, PENDING); a scan
    #: that waits for Redis (never closed, slow) holds a thread but not one of the
    #: ``max_active_scans`` working slots (``writer.scheduler``)
    max_scan_threads: int = 64
    #: filter for datasets of spectra and images: a preset of ``nexus_writer_service.compression``
    #: ("gzip", every HDF5 reader opens it; "bitshuffle-lz4", readers need the plugin; "" none)
    compression: str = compression_presets.DEFAULT
    #: beamline configuration (metadata.config), as validated raw data: the session's own
    #: (published in scan_info) is merged over it, and the scan's metadata over both
    beamline: dict = field(default_factory=dict)
    #: where ``beamline`` came from, for messages
    beamline_source: str = ""
    #: folders the writer may write in (with ``base_path``, always allowed): when given, a
    #: scan whose file lies elsewhere is FAILED. Empty (the default): files BLISS names
    #: (its SCAN_SAVING.base_path, which the writer is not told) go anywhere except system
    #: and hidden folders (``io.path_policy``); templated files stay under base_path
    allowed_roots: list[str] = field(default_factory=list)
    #: while Redis is unreachable, the warning is repeated this often (seconds)
    redis_warning_period: float = 30.0
    #: MB: with less free space on its disk nothing is written (the data wait in Redis);
    #: the Tango device refuses scans with the same rule (``io.space``)
    required_disk_space: float = REQUIRED_MB
    #: MB: with less free space a scan warns
    recommended_disk_space: float = RECOMMENDED_MB
    #: a scan waits this long at most for room on its disk or for a reader's lock to go
    #: (and never longer than its data stay in Redis); then it is given up with the reason
    storage_wait: float = 24 * 3600.0
    #: while waiting, the disk or the lock is checked again this often (seconds)
    storage_check_period: float = 2.0

    def space_rule(self) -> SpaceRule:
        return SpaceRule(self.required_disk_space, self.recommended_disk_space)

    def path_policy(self) -> PathPolicy:
        """Where this writer's files may go: its roots, strict when the operator named some
        (the writer, its salvage and, through the heartbeat, the Tango devices apply it)."""
        return PathPolicy(tuple(self.roots()), strict=bool(self.allowed_roots))

    def roots(self) -> list[str]:
        """The allowed roots in force: ``allowed_roots`` and ``base_path``, absolute."""
        out: list[str] = []
        for root in [*self.allowed_roots, self.base_path]:
            root = os.path.normpath(os.path.abspath(root))
            if root not in out:
                out.append(root)
        return out
