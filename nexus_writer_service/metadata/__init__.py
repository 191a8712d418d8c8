"""The BLISS-session side of the writer: what users call from their session.

Nothing here imports BLISS at import time: only the functions that need it do.
"""

from .status import WriterStatus, wait_for_writer, writer_status

__all__ = ["writer_status", "wait_for_writer", "WriterStatus"]
