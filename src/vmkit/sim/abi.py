"""The ABI constants as plain ints, for the model's hot paths.

``enum.IntFlag`` arithmetic costs microseconds per operation; the model tests flags on every call,
so it uses these ints (same names and values as the members of :mod:`vmkit.flags`).
"""

from vmkit.flags import EXPORTED_ENUMS

for _enum in EXPORTED_ENUMS:
    for _name, _member in _enum.__members__.items():
        globals()[_name] = int(_member)
del _enum, _name, _member


def __getattr__(name: str) -> int:  # for type checkers: every constant is an int
    raise AttributeError(name)
