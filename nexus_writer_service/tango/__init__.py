"""Tango devices in front of the session writers (optional: ``pip install nexus_writer_service[tango]``).

- ``NexusWriter`` (``nexus_writer.py``): BLISS 2.2.1's writer mode ``'nexus'``, by scan
  identifier; a drop-in for ESRF's device of that class.
- ``BlissWriter`` (``bliss_writer.py``): BLISS 2.4's writer mode ``'mapping'``, by scan key.

Both answer from the completeness protocol in Redis (``view.py``, rules in
``checks.py``); ``server.py`` runs them inside ``NexusWriterService [INSTANCE]`` (ESRF's Tango server)
and ``apps/register.py`` puts them in the Tango database. Importing this package
does not import pytango; its modules do.
"""
