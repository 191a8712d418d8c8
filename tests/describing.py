"""Scan descriptions from recordings, as the transport makes them and the writer
classifies them (shared by the tests that plan scans without Redis)."""

from __future__ import annotations

from nexus_writer_service.descriptions import ScanDescription, describe_stream
from nexus_writer_service.kinds import classify


def describe(rec, info=None) -> ScanDescription:
    """As the transport describes a scan: from each stream's info and encoding; classified."""
    streams = [describe_stream(s.name, s.info, s.encoding) for s in rec.streams]
    return classify(ScanDescription("esrf:scan:x", rec.identity["name"], rec.number, "s",
                                    info or rec.info_prepared, streams, rec.identity["path"]))
