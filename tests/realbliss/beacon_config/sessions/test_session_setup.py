# Setup script of test_session. These two lines are exactly what users add to their own
# session's setup script to let nexus_writer_service know where and what to write.
from nexus_writer_service import metadata
metadata.register_all_metadata_generators()
