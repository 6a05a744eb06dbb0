"""``vmkit.native``: the real Linux memory-management system calls, safely, from Python.

Two forms behind the api.md signatures:

* module-level functions acting on the calling process (``vmkit.native.mmap(...)``), plus
  :class:`Mapping`, the Pythonic object over one mapping;
* :func:`spawn`, an isolated child process that runs the same calls on our behalf (MAP_FIXED anywhere,
  munmap of everything, faults: none of it can harm the caller).
"""

from vmkit.native.calls import (
    address_of, brk, madvise, maps, memfd_create, mincore, mlock, mlock2, mlockall, mmap, mprotect,
    mremap, msync, munlock, munlockall, munmap, pidfd_open, process_madvise, process_mrelease,
    process_vm_readv, process_vm_writev, read, read_process, write, write_process,
)
from vmkit.native.child import ChildRuntimeLost, NativeProcess, spawn
from vmkit.native.entry import EntryState, entry_state, maps_at_entry
from vmkit.native.mapping import Mapping

__all__ = [
    "ChildRuntimeLost", "EntryState", "Mapping", "NativeProcess", "address_of", "brk", "entry_state",
    "madvise", "maps", "maps_at_entry", "memfd_create", "mincore", "mlock", "mlock2", "mlockall",
    "mmap", "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap", "pidfd_open",
    "process_madvise", "process_mrelease", "process_vm_readv", "process_vm_writev", "read",
    "read_process", "spawn", "write", "write_process",
]
