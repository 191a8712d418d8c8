"""Stub of flint.flint (the application's main module)."""


def patch_qt(*args, **kwargs) -> None:
    """The real one patches Qt for BLISS's shell; there is no Qt application here."""
