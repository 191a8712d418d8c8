"""The states of a scan as the writer reports them (Redis protocol and ``writer/status``)."""

PENDING = "PENDING"        # seen, not yet being written
WRITING = "WRITING"        # entry created, data being appended
SUCCEEDED = "SUCCEEDED"    # closed by BLISS, every published point written
FAILED = "FAILED"          # could not be written (see error)
INCOMPLETE = "INCOMPLETE"  # written with something missing (see warnings)
SKIPPED = "SKIPPED"        # save=False: nothing to write

FINAL_STATES = frozenset({SUCCEEDED, FAILED, INCOMPLETE, SKIPPED})

#: ``writer/status`` in the file while the entry is written: WRITING in the readers' word.
#: blissdata's dynamic HDF5 reader (and ewoksdata through it) reads an entry as started once
#: its writer status is RUNNING, SUCCEEDED or FAILED (ESRF's writer's vocabulary); the Redis
#: protocol, Tango and the status page keep WRITING.
RUNNING = "RUNNING"


def in_file(status: str) -> str:
    """A state as ``writer/status`` says it."""
    return RUNNING if status == WRITING else status


def from_file(status: str) -> str:
    """``writer/status`` as a state (entries of earlier versions say WRITING)."""
    return WRITING if status == RUNNING else status

#: a published length Redis could not give (never taken as "nothing was published"):
#: the transport gives it, the completeness verdict reads it
UNCHECKED = -1
