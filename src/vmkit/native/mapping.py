""":class:`Mapping`: one mapping of the calling process as a Python object.

What CPython's :class:`mmap.mmap` lacks: protection changes, every madvise advice, locking, residency,
remapping with every flag, and the address.  Indexing and :meth:`Mapping.read` / :meth:`Mapping.write`
are safe (a protected or unmapped page raises EFAULT); :attr:`Mapping.buffer` is a raw memoryview at
full memory speed, which, like any pointer, must not be used after the pages become inaccessible.
"""

from __future__ import annotations

import ctypes
import errno
from types import TracebackType

from vmkit.errors import os_error
from vmkit.flags import MS, Map, MLock, MRemap, Prot, page_align
from vmkit.native import calls

_RW = Prot.PROT_READ | Prot.PROT_WRITE
_PRIVATE_ANON = Map.MAP_PRIVATE | Map.MAP_ANONYMOUS


class Mapping:
    """A mapping of the calling process: ``with Mapping(8192) as m: m[0:5] = b"hello"``.

    The defaults make a private anonymous read-write mapping; every mmap argument can be given.
    Leaving the ``with`` block (or :meth:`close`) unmaps it.
    """

    def __init__(self, length: int, prot: int = _RW, flags: int = _PRIVATE_ANON, fd: int = -1,
                 offset: int = 0, address: int | None = None) -> None:
        self._address = calls.mmap(address, length, prot, flags, fd, offset)
        self._length = length
        self.prot = prot
        self.flags = flags
        self.closed = False

    @classmethod
    def adopt(cls, address: int, length: int, prot: int = _RW, flags: int = _PRIVATE_ANON) -> Mapping:
        """Wraps memory that is already mapped (closing it will unmap it)."""
        self = cls.__new__(cls)
        self._address, self._length, self.prot, self.flags, self.closed = address, length, prot, flags, False
        return self

    # --- identity ------------------------------------------------------------------------------

    @property
    def address(self) -> int:
        """The start address."""
        self._check_open()
        return self._address

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self._address:#x}-{self._address + self._length:#x}"
        return f"<vmkit.native.Mapping {state} {Prot(self.prot)!r}>"

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("the mapping is closed")

    def _range(self, offset: int, length: int | None) -> tuple[int, int]:
        self._check_open()
        if length is None:
            length = self._length - offset
        if offset < 0 or length < 0 or offset + length > page_align(self._length):
            raise ValueError(f"range {offset}+{length} lies outside the mapping of {self._length} bytes")
        return self._address + offset, length

    # --- system calls on the mapping ---------------------------------------------------------

    def protect(self, prot: int, offset: int = 0, length: int | None = None) -> None:
        """mprotect(2) on the whole mapping or a page-aligned part of it."""
        addr, n = self._range(offset, length)
        calls.mprotect(addr, n, prot)
        if offset == 0 and n >= self._length:
            self.prot = prot

    def advise(self, advice: int, offset: int = 0, length: int | None = None) -> None:
        """madvise(2) on the whole mapping or a part of it."""
        calls.madvise(*self._range(offset, length), advice)

    def lock(self, onfault: bool = False, offset: int = 0, length: int | None = None) -> None:
        """mlock2(2), with MLOCK_ONFAULT when ``onfault``."""
        addr, n = self._range(offset, length)
        calls.mlock2(addr, n, MLock.MLOCK_ONFAULT if onfault else 0)

    def unlock(self, offset: int = 0, length: int | None = None) -> None:
        """munlock(2)."""
        calls.munlock(*self._range(offset, length))

    def sync(self, flags: int = MS.MS_SYNC, offset: int = 0, length: int | None = None) -> None:
        """msync(2)."""
        addr, n = self._range(offset, length)
        calls.msync(addr, n, flags)

    def residency(self, offset: int = 0, length: int | None = None) -> bytes:
        """mincore(2): one byte per page, bit 0 set where the page is resident."""
        return calls.mincore(*self._range(offset, length))

    def remap(self, new_length: int, flags: int = MRemap.MREMAP_MAYMOVE,
              new_address: int | None = None) -> int:
        """mremap(2) of the whole mapping; the object follows it to its new address and size.

        With MREMAP_DONTUNMAP the old range stays mapped but is no longer this object's.
        """
        self._check_open()
        self._address = calls.mremap(self._address, self._length, new_length, flags, new_address)
        self._length = new_length
        return self._address

    # --- contents ------------------------------------------------------------------------------

    def read(self, offset: int = 0, n: int | None = None) -> bytes:
        """Reads bytes; EFAULT (not a crash) on a protected or unmapped page."""
        addr, length = self._range(offset, n)
        return calls.read(addr, length)

    def write(self, data: bytes | bytearray | memoryview, offset: int = 0) -> None:
        """Writes bytes; EFAULT (not a crash) on a protected or unmapped page."""
        addr, _ = self._range(offset, len(data))
        calls.write(addr, data)

    def __getitem__(self, key: int | slice) -> int | bytes:
        if isinstance(key, slice):
            self._check_open()
            start, stop, step = key.indices(self._length)
            if step == 1:
                return self.read(start, stop - start) if stop > start else b""
            indices = range(start, stop, step)
            if not indices:
                return b""
            low = min(indices[0], indices[-1])
            span = self.read(low, max(indices[0], indices[-1]) + 1 - low)
            return span[indices[0] - low::step]
        index = key + self._length if key < 0 else key
        if not 0 <= index < self._length:
            raise IndexError("mapping index out of range")
        return self.read(index, 1)[0]

    def __setitem__(self, key: int | slice, value: int | bytes) -> None:
        if isinstance(key, slice):
            start, stop, step = key.indices(self._length)
            data = bytes(value) if not isinstance(value, int) else bytes([value])
            if step != 1 or len(data) != max(0, stop - start):
                raise ValueError("slice assignment must keep the mapping's size (step 1)")
            self.write(data, start)
            return
        index = key + self._length if key < 0 else key
        if not 0 <= index < self._length:
            raise IndexError("mapping index out of range")
        self.write(bytes([value]) if isinstance(value, int) else bytes(value), index)

    @property
    def buffer(self) -> memoryview:
        """A writable memoryview of the pages at memory speed (no protection checks: an access to
        a page made inaccessible, or after close, crashes like a C pointer would)."""
        self._check_open()
        if not self.prot & Prot.PROT_READ:
            raise os_error(errno.EACCES, "the mapping is not readable")
        return memoryview((ctypes.c_char * self._length).from_address(self._address)).cast("B")

    def __buffer__(self, flags: int) -> memoryview:  # PEP 688, Python 3.12+
        return self.buffer

    # --- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """munmap(2); idempotent."""
        if not self.closed:
            calls.munmap(self._address, self._length)
            self.closed = True

    def __enter__(self) -> Mapping:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["Mapping"]
