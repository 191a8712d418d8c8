"""The BLISS-session side of the writer: what users call from their session.

Nothing here imports BLISS at import time: only the functions that need it do.
"""

from .generators import register_all_metadata_generators
from .status import WriterStatus, wait_for_writer, writer_status

__all__ = ["register_all_metadata_generators", "writer_status", "wait_for_writer", "WriterStatus"]
