"""The memory-management system calls, on the calling process, with the raw signatures of api.md.

Each function is one ctypes call plus the error check: a failure raises the kernel's errno as
:class:`OSError` (never -1, never MAP_FAILED).  No argument is checked here: the kernel is the judge, so
the errno and its precedence are the kernel's own.  ``size_t`` arguments wrap modulo 2**64 as in C.

Memory is read and written with :func:`read` / :func:`write`, which go through ``process_vm_readv`` /
``process_vm_writev`` on the calling process: an unmapped or protected address raises EFAULT instead of
crashing the interpreter.  (The kernel serves these like any other access through the page tables, but
it does not grow stacks or deliver signals for them; the isolated child of :mod:`vmkit.native.child`
performs real CPU loads and stores.)
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable, Sequence

from vmkit.errors import os_error
from vmkit.flags import MAP_FAILED, PAGE_SHIFT, PAGE_SIZE
from vmkit.native import _libc

_MASK64 = (1 << 64) - 1
#: Pages whose mincore state is fetched per kernel call (1 MiB of vector).
_MINCORE_CHUNK_PAGES = 1 << 20

# Per-call costs are kept near the bare ctypes call (benchmarks/native_overhead.py): small mincore
# vectors and read() buffers come from pools of preallocated ctypes buffers (a list's pop/append is
# atomic, so a buffer belongs to one call at a time, whatever the threads), the C arguments are passed
# as ints, and every result is a fresh bytes object copied out of the buffer.

#: mincore ranges up to this many pages use a pooled vector.
_MINCORE_SMALL_PAGES = 64
_vec1_pool: list[tuple[ctypes.Array[ctypes.c_char], int]] = []
_vec_pool: list[tuple[ctypes.Array[ctypes.c_char], int]] = []

#: read() of up to this many bytes uses a pooled buffer of exactly that size (with its local iovec);
#: at most _READ_POOL_SIZES sizes are kept.
_READ_POOL_BYTES = 1 << 16
_READ_POOL_SIZES = 64
_read_pools: dict[int, list[tuple[ctypes.Array[ctypes.c_char], bytes]]] = {}

_pack_iov = struct.Struct("QQ").pack

_addressof = ctypes.addressof
_get_errno = _libc.get_errno
_c_mincore = _libc.mincore
_c_readv = _libc.process_vm_readv
_c_writev = _libc.process_vm_writev

#: This process's pid, for read()/write() on ourselves (refreshed in a forked child).
_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)

Iov = Sequence[tuple[int, int]]


def _fail() -> OSError:
    return os_error(_get_errno())


def mmap(addr: int | None, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    """mmap(2); returns the address of the new mapping."""
    result: int = _libc.mmap(addr, length, prot, flags, fd, offset)
    if result == MAP_FAILED:
        raise _fail()
    return result


def munmap(addr: int, length: int) -> None:
    """munmap(2)."""
    if _libc.munmap(addr, length):
        raise _fail()


def mprotect(addr: int, length: int, prot: int) -> None:
    """mprotect(2)."""
    if _libc.mprotect(addr, length, prot):
        raise _fail()


def msync(addr: int, length: int, flags: int) -> None:
    """msync(2)."""
    if _libc.msync(addr, length, flags):
        raise _fail()


def madvise(addr: int, length: int, advice: int) -> None:
    """madvise(2)."""
    if _libc.madvise(addr, length, advice):
        raise _fail()


def mlock(addr: int, length: int) -> None:
    """mlock(2)."""
    if _libc.mlock(addr, length):
        raise _fail()


def mlock2(addr: int, length: int, flags: int = 0) -> None:
    """mlock2(2)."""
    if _libc.mlock2(addr, length, flags):
        raise _fail()


def munlock(addr: int, length: int) -> None:
    """munlock(2)."""
    if _libc.munlock(addr, length):
        raise _fail()


def mlockall(flags: int) -> None:
    """mlockall(2)."""
    if _libc.mlockall(flags):
        raise _fail()


def munlockall() -> None:
    """munlockall(2)."""
    if _libc.munlockall():
        raise _fail()


def mremap(old_address: int, old_size: int, new_size: int, flags: int = 0,
           new_address: int | None = None) -> int:
    """mremap(2) through the raw syscall; returns the (possibly new) address."""
    result: int = _libc.mremap(old_address, old_size, new_size, flags, new_address)
    if result == MAP_FAILED:
        raise _fail()
    return result


def brk(addr: int) -> int:
    """The raw brk syscall: returns the break after the call (``brk(0)`` reads it); never raises.

    Moving the break of the interpreter under its C library's allocator is the caller's risk.
    """
    result: int = _libc.brk(addr)
    return result


def mincore_pages(length: int) -> int:
    """The number of vector bytes mincore fills for ``length`` (``mm/mincore.c``: pages, rounded up)."""
    length &= _MASK64
    return (length >> PAGE_SHIFT) + (1 if length & (PAGE_SIZE - 1) else 0)


def mincore(addr: int, length: int) -> bytes:
    """mincore(2); returns one byte per page.

    The kernel itself walks the range in chunks and copies each chunk's vector out; large ranges are
    fetched here the same way, so the errno of a hole is the same and no 2**35-byte vector is needed.
    """
    if 0 < length <= PAGE_SIZE:  # one page: a pooled 1-byte vector
        try:
            vec, vaddr = _vec1_pool.pop()
        except IndexError:
            vec = (ctypes.c_char * 1)()
            vaddr = _addressof(vec)
        failed = _c_mincore(addr, length, vaddr)
        _vec1_pool.append((vec, vaddr))
        if failed:
            raise _fail()
        return vec.raw  # a fresh bytes (the buffer is reused)
    if 0 < length <= _MINCORE_SMALL_PAGES << PAGE_SHIFT:
        try:
            vec, vaddr = _vec_pool.pop()
        except IndexError:
            vec = (ctypes.c_char * _MINCORE_SMALL_PAGES)()
            vaddr = _addressof(vec)
        if _c_mincore(addr, length, vaddr):
            _vec_pool.append((vec, vaddr))
            raise _fail()
        out = vec[: (length + PAGE_SIZE - 1) >> PAGE_SHIFT]
        _vec_pool.append((vec, vaddr))
        return out
    pages = mincore_pages(length)
    if pages <= _MINCORE_CHUNK_PAGES:
        vec = ctypes.create_string_buffer(pages or 1)
        if _libc.mincore(addr, length, vec):
            raise _fail()
        return vec.raw[:pages]
    out = bytearray()
    vec = ctypes.create_string_buffer(_MINCORE_CHUNK_PAGES)
    start, remaining = addr, length & _MASK64
    while remaining:
        chunk = min(remaining, _MINCORE_CHUNK_PAGES << PAGE_SHIFT)
        if _libc.mincore(start, chunk, vec):
            raise _fail()
        out += vec.raw[:mincore_pages(chunk)]
        start += chunk
        remaining -= chunk
    return bytes(out)


def iovec_array(iov: Iov) -> ctypes.Array[ctypes.c_uint64]:
    """A C ``struct iovec[]`` for a sequence of ``(address, length)`` pairs."""
    array = (ctypes.c_uint64 * (2 * len(iov) or 1))()
    for i, (base, length) in enumerate(iov):
        array[2 * i] = base & _MASK64
        array[2 * i + 1] = length & _MASK64
    return array


def iovec_bytes(iov: Iov) -> bytes:
    """A C ``struct iovec[]`` packed into bytes (for the kernel to read, never to write)."""
    if len(iov) == 1:
        (base, length), = iov
        return _pack_iov(base & _MASK64, length & _MASK64)
    return b"".join([_pack_iov(base & _MASK64, length & _MASK64) for base, length in iov])


def _transfer(call: Callable[..., int], pid: int, local_iov: Iov, remote_iov: Iov, flags: int) -> int:
    """process_vm_readv/writev: one inline path for the common single-iovec case."""
    if len(local_iov) == 1 and len(remote_iov) == 1:
        (lbase, llen), = local_iov
        (rbase, rlen), = remote_iov
        result: int = call(pid, _pack_iov(lbase & _MASK64, llen & _MASK64), 1,
                           _pack_iov(rbase & _MASK64, rlen & _MASK64), 1, flags)
    else:
        result = call(pid, iovec_bytes(local_iov), len(local_iov), iovec_bytes(remote_iov),
                      len(remote_iov), flags)
    if result < 0:
        raise _fail()
    return result


def process_vm_readv(pid: int, local_iov: Iov, remote_iov: Iov, flags: int = 0) -> int:
    """process_vm_readv(2); iovs are ``(address, length)`` pairs; returns the bytes copied."""
    return _transfer(_c_readv, pid, local_iov, remote_iov, flags)


def process_vm_writev(pid: int, local_iov: Iov, remote_iov: Iov, flags: int = 0) -> int:
    """process_vm_writev(2); iovs are ``(address, length)`` pairs; returns the bytes copied."""
    return _transfer(_c_writev, pid, local_iov, remote_iov, flags)


def process_madvise(pidfd: int, iov: Iov, advice: int, flags: int = 0) -> int:
    """process_madvise(2); returns the bytes advised."""
    result: int = _libc.process_madvise(pidfd, iovec_bytes(iov), len(iov), advice, flags)
    if result < 0:
        raise _fail()
    return result


def process_mrelease(pidfd: int, flags: int = 0) -> None:
    """process_mrelease(2)."""
    if _libc.process_mrelease(pidfd, flags):
        raise _fail()


def pidfd_open(pid: int, flags: int = 0) -> int:
    """pidfd_open(2); returns the new file descriptor."""
    fd: int = _libc.pidfd_open(pid, flags)
    if fd < 0:
        raise _fail()
    return fd


def memfd_create(name: str, flags: int = 0) -> int:
    """memfd_create(2); returns the new file descriptor."""
    fd: int = _libc.memfd_create(os.fsencode(name), flags)
    if fd < 0:
        raise _fail()
    return fd


# --- memory of this and other processes --------------------------------------------------------


def read_process(pid: int, addr: int, n: int) -> bytes:
    """Reads ``n`` bytes at ``addr`` in process ``pid`` (``process_vm_readv``).

    Raises EFAULT naming the first unreadable address if fewer than ``n`` bytes could be read.
    """
    if n <= 0:
        return b""
    if n > _READ_POOL_BYTES:
        big = (ctypes.c_char * n)()
        got = process_vm_readv(pid, [(_addressof(big), n)], [(addr, n)])
        if got != n:
            raise os_error(errno.EFAULT, f"address {addr + got:#x} of pid {pid} is not readable")
        return big.raw
    pool = _read_pools.get(n)
    if pool is None:
        if len(_read_pools) >= _READ_POOL_SIZES:
            _read_pools.clear()
        pool = _read_pools.setdefault(n, [])
    try:  # a pooled n-byte buffer and its local iovec
        entry = pool.pop()
    except IndexError:
        buf = (ctypes.c_char * n)()
        entry = (buf, _pack_iov(_addressof(buf), n))
    got = _c_readv(pid, entry[1], 1, _pack_iov(addr & _MASK64, n), 1, 0)
    if got == n:
        out = entry[0].raw  # a fresh bytes, copied before the buffer goes back to the pool
        pool.append(entry)
        return out
    pool.append(entry)
    if got < 0:
        raise _fail()
    raise os_error(errno.EFAULT, f"address {addr + got:#x} of pid {pid} is not readable")


def write_process(pid: int, addr: int, data: bytes | bytearray | memoryview) -> None:
    """Writes ``data`` at ``addr`` in process ``pid`` (``process_vm_writev``).

    Raises EFAULT naming the first unwritable address if not every byte could be written.
    """
    n = len(data)
    if n == 0:
        return
    buf = ctypes.create_string_buffer(bytes(data), n)
    done = process_vm_writev(pid, [(ctypes.addressof(buf), n)], [(addr, n)])
    if done != n:
        raise os_error(errno.EFAULT, f"address {addr + done:#x} of pid {pid} is not writable")


def read(addr: int, n: int) -> bytes:
    """Reads ``n`` bytes of this process's memory; EFAULT, not a crash, on a bad address."""
    return read_process(_pid, addr, n)


def write(addr: int, data: bytes | bytearray | memoryview) -> None:
    """Writes ``data`` into this process's memory; EFAULT, not a crash, on a bad address."""
    write_process(_pid, addr, data)


def address_of(buffer: bytearray | memoryview | ctypes.Array[ctypes.c_char] | object) -> int:
    """The address of the first byte of any writable Python buffer (bytearray, mmap, array...).

    Read-only buffers (``bytes``) raise TypeError: their memory must not be written through an
    address.  The address is valid while the buffer object lives and is not resized.
    """
    view = memoryview(buffer)  # type: ignore[arg-type]
    if view.readonly:
        raise TypeError(f"{type(buffer).__name__} is a read-only buffer")
    if not view.c_contiguous:
        raise TypeError("the buffer is not contiguous")
    if view.nbytes == 0:
        raise ValueError("an empty buffer has no address")
    flat = view.cast("B")
    return ctypes.addressof(ctypes.c_char.from_buffer(flat))


def maps(pid: int | str = "self") -> str:
    """The text of ``/proc/<pid>/maps``."""
    with open(f"/proc/{pid}/maps") as f:
        return f.read()
