# Add these lines to your BLISS session's setup script (<session>_setup.py) so that the
# external NeXus writer (NexusSessionWriter) knows where and what to write:
from nexus_writer_service import metadata
metadata.register_all_metadata_generators()

# Optional: let BLISS itself write nothing and leave the saving to the external writer
# (or "external": BLISS names the file, the external writer writes it).
# SCAN_SAVING.writer = "null"
