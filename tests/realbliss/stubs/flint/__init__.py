"""Stub of Flint (BLISS's Qt plotting application) for the real-BLISS test tier.

Only what BLISS 2.2.1 imports is defined; see ../README.md.
"""


class FlintStubError(RuntimeError):
    """Raised when BLISS really tries to use Flint in the test tier."""


def _unavailable(what: str):
    raise FlintStubError(f"{what}: Flint is a stub in tests/realbliss (no GUI here)")
