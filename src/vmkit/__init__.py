"""vmkit: the Linux memory-management system-call layer in Python, twice over.

* :mod:`vmkit.native` — the real system calls (in-process functions, and an isolated child process);
* :mod:`vmkit.sim` — a model kernel that behaves like Linux 6.18 x86-64 through the same interface.

Every constant of the ABI is importable here under its C name (``vmkit.PROT_READ``,
``vmkit.MAP_FIXED_NOREPLACE``, ``vmkit.MADV_GUARD_INSTALL``...), as a member of its enum class.
"""
# (No ``from __future__ import annotations`` here: it would bind ``vmkit.annotations``.)

from vmkit._constants import *  # noqa: F403  (every ABI constant, by name)
from vmkit._constants import __all__ as _constant_names
from vmkit.errors import BusError, Fault, ProcessGone, SegmentationFault
from vmkit.flags import (
    IOV_MAX, MAP_ANON, MAP_FAILED, MAP_HUGE_MASK, MAP_HUGE_SHIFT, MCL, MFD, MS, PAGE_SIZE,
    PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP, TASK_SIZE, BusCode, Madv, Map, MapHuge, MLock, MRemap, Prot,
    SegvCode,
)
from vmkit.process import Process

__version__ = "0.1.0"


__all__ = [
    "BusCode", "BusError", "Fault", "IOV_MAX", "MAP_ANON", "MAP_FAILED", "MAP_HUGE_MASK",
    "MAP_HUGE_SHIFT", "MCL", "MFD", "MS", "Madv", "Map", "MapHuge", "MLock", "MRemap", "PAGE_SIZE",
    "PIDFD_SELF_THREAD", "PIDFD_SELF_THREAD_GROUP", "Process", "ProcessGone", "Prot",
    "SegmentationFault", "SegvCode", "TASK_SIZE", *_constant_names,
]
