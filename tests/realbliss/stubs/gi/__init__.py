"""Stub of PyGObject (``gi``) for the real-BLISS test tier: only what
bliss.physics.hkl imports (``gi.require_version``, ``gi.repository.Hkl``); see ../README.md.
"""


def require_version(namespace: str, version: str) -> None:
    """Accepted; the stub repository has no versions."""
