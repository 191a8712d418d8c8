"""External NeXus writer for BLISS.

Importing this package must not need BLISS: the writer runs in its own process,
next to (not inside) the BLISS session it listens to.
"""

__version__ = "0.1.0"
