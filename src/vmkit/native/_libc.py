"""ctypes bindings of the C library: one typed function object per system call used by vmkit.

glibc's wrapper is used where glibc 2.36 has one; otherwise (mremap with its fifth argument, brk's raw
return value, or a C library that lacks a wrapper) the call goes through ``syscall()`` with the x86-64
number.  Every binding has ``argtypes`` set, so Python ints convert the way C would (size_t arguments
wrap modulo 2**64, as in C) and no per-call conversion code is needed in Python.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

c_long, c_ulong, c_int, c_uint, c_size_t, c_void_p = (
    ctypes.c_long, ctypes.c_ulong, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.c_void_p,
)

libc = ctypes.CDLL(None, use_errno=True)

#: x86-64 system call numbers (``arch/x86/entry/syscalls/syscall_64.tbl``).
SYS = {
    "read": 0, "write": 1, "open": 2, "close": 3, "mmap": 9, "mprotect": 10, "munmap": 11,
    "brk": 12, "rt_sigaction": 13, "rt_sigprocmask": 14, "pread64": 17, "pwrite64": 18,
    "sched_yield": 24, "mremap": 25, "msync": 26, "mincore": 27, "madvise": 28, "getpid": 39,
    "fork": 57, "exit": 60, "wait4": 61, "kill": 62, "ftruncate": 77, "mkdir": 83, "unlink": 87,
    "getrlimit": 97, "ptrace": 101, "getuid": 102, "setresuid": 117, "setresgid": 119,
    "capget": 125, "capset": 126, "prctl": 157, "setrlimit": 160, "mlock": 149, "munlock": 150,
    "mlockall": 151, "munlockall": 152, "exit_group": 231, "openat": 257, "pipe2": 293, "mkdirat": 258,
    "unlinkat": 263, "prlimit64": 302, "process_vm_readv": 310, "process_vm_writev": 311,
    "memfd_create": 319, "mlock2": 325, "pidfd_send_signal": 424, "pidfd_open": 434,
    "pidfd_getfd": 438, "process_madvise": 440, "process_mrelease": 448,
}

_raw_syscall = libc["syscall"]
_raw_syscall.restype = c_long


def _bind(name: str, restype: Any, argtypes: list[Any]) -> Callable[..., Any]:
    """Binds glibc's wrapper ``name``, or ``syscall(SYS_name, ...)`` when this C library lacks it."""
    try:
        fn = libc[name]
    except AttributeError:
        return _bind_syscall(name, restype, argtypes)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn  # type: ignore[no-any-return]


def _bind_syscall(name: str, restype: Any, argtypes: list[Any]) -> Callable[..., Any]:
    """``syscall(SYS_name, ...)`` as a typed function object of its own."""
    fn = libc["syscall"]
    fn.restype = restype
    fn.argtypes = [c_long, *argtypes]
    number = SYS[name]

    def call(*args: Any) -> Any:
        return fn(number, *args)

    call.__name__ = name
    return call


def raw_syscall_fn(argc: int) -> Callable[..., int]:
    """A ``syscall()`` function object typed for ``argc`` long arguments after the number."""
    fn = libc["syscall"]
    fn.restype = c_long
    fn.argtypes = [c_long] * (argc + 1)
    return fn  # type: ignore[no-any-return]


mmap = _bind("mmap", ctypes.c_uint64, [c_void_p, c_size_t, c_int, c_int, c_int, c_long])
munmap = _bind("munmap", c_int, [c_void_p, c_size_t])
mprotect = _bind("mprotect", c_int, [c_void_p, c_size_t, c_int])
msync = _bind("msync", c_int, [c_void_p, c_size_t, c_int])
mincore = _bind("mincore", c_int, [c_void_p, c_size_t, c_void_p])
madvise = _bind("madvise", c_int, [c_void_p, c_size_t, c_int])
mlock = _bind("mlock", c_int, [c_void_p, c_size_t])
mlock2 = _bind("mlock2", c_int, [c_void_p, c_size_t, c_uint])
munlock = _bind("munlock", c_int, [c_void_p, c_size_t])
mlockall = _bind("mlockall", c_int, [c_int])
munlockall = _bind("munlockall", c_int, [])
process_vm_readv = _bind(
    "process_vm_readv", ctypes.c_ssize_t, [c_int, c_void_p, c_ulong, c_void_p, c_ulong, c_ulong]
)
process_vm_writev = _bind(
    "process_vm_writev", ctypes.c_ssize_t, [c_int, c_void_p, c_ulong, c_void_p, c_ulong, c_ulong]
)
process_madvise = _bind("process_madvise", ctypes.c_ssize_t, [c_int, c_void_p, c_size_t, c_int, c_uint])
process_mrelease = _bind("process_mrelease", c_int, [c_int, c_uint])
pidfd_open = _bind("pidfd_open", c_int, [c_int, c_uint])
memfd_create = _bind("memfd_create", c_int, [ctypes.c_char_p, c_uint])
#: mremap through the raw syscall so the fifth argument is always passed as given.
mremap = _bind_syscall("mremap", ctypes.c_uint64, [c_void_p, c_size_t, c_size_t, c_int, c_void_p])
#: brk through the raw syscall: it returns the break, where glibc's ``brk()`` returns 0 or -1.
brk = _bind_syscall("brk", ctypes.c_uint64, [c_void_p])
pidfd_getfd = _bind_syscall("pidfd_getfd", c_int, [c_int, c_int, c_uint])
pidfd_send_signal = _bind_syscall("pidfd_send_signal", c_int, [c_int, c_int, c_void_p, c_uint])
personality = _bind("personality", c_int, [c_ulong])
ptrace = _bind("ptrace", c_long, [c_long, c_int, c_void_p, c_void_p])
prctl = _bind("prctl", c_int, [c_int, c_ulong, c_ulong, c_ulong, c_ulong])
get_errno = ctypes.get_errno
set_errno = ctypes.set_errno
