"""Stub of gi.repository: ``Hkl`` resolves any attribute chain (BLISS reads
``Hkl.UnitEnum.USER`` when its hkl classes are defined) and raises when called."""


class _Stub:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> "_Stub":
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Stub(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name}: gi.repository.Hkl is a stub in tests/realbliss")

    def __repr__(self) -> str:
        return f"<stub {self._name}>"


Hkl = _Stub("Hkl")
