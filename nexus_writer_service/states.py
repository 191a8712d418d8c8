"""The states of a scan as the writer reports them (Redis protocol and ``writer/status``)."""

PENDING = "PENDING"        # seen, not yet being written
WRITING = "WRITING"        # entry created, data being appended
SUCCEEDED = "SUCCEEDED"    # closed by BLISS, every published point written
FAILED = "FAILED"          # could not be written (see error)
INCOMPLETE = "INCOMPLETE"  # written with something missing (see warnings)
SKIPPED = "SKIPPED"        # save=False: nothing to write

FINAL_STATES = frozenset({SUCCEEDED, FAILED, INCOMPLETE, SKIPPED})

#: a published length Redis could not give (never taken as "nothing was published"):
#: the transport gives it, the completeness verdict reads it
UNCHECKED = -1
