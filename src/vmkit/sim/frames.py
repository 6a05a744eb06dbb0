"""The page layer's memory: physical frames carved out of one big anonymous mapping of the host.

Untouched frames cost nothing (the host maps them lazily), page contents never become Python objects
per byte, and copies are slice assignments on one memoryview (memcpy speed).  Frame 0 is the shared
zero page and is never written.  Every frame has a reference count (page-table entries, page-cache
slots) and a map count (page-table entries only, for smaps' Rss/Pss/Shared figures); a frame whose
reference count drops to zero is returned to the host (MADV_DONTNEED), so it reads as zeros when
reused.
"""

from __future__ import annotations

import mmap
from array import array

from vmkit.flags import PAGE_SIZE

ZERO_FRAME = 0
#: Virtual size of the pool; only frames in use occupy memory.
POOL_BYTES = 1 << 36


class FramePool:
    """All frames of every model kernel in this Python process."""

    def __init__(self, capacity: int = POOL_BYTES) -> None:
        self._mem = mmap.mmap(
            -1, capacity, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0x4000)
        )
        self.view = memoryview(self._mem)
        self.capacity = capacity // PAGE_SIZE
        self._free: list[int] = []
        self._next = 1
        self.refs = array("q", [1])  # the zero page is never freed
        self.mapcount = array("q", [0])
        self.dirty = bytearray(1)
        self.in_use = 0
        #: Hardware-poisoned frames (``PageHWPoison``, ``Kernel(memory_failure=True)`` only): each
        #: keeps a reference of its own, so it never returns to the free list, as a poisoned page
        #: never goes back to the buddy allocator.
        self.poisoned: set[int] = set()

    def alloc(self) -> int:
        """A zero-filled frame with one reference and no mappings."""
        if self._free:
            frame = self._free.pop()
        else:
            frame = self._next
            if frame >= self.capacity:
                raise MemoryError("the model's frame pool is exhausted")
            self._next += 1
            self.refs.append(0)
            self.mapcount.append(0)
            self.dirty.append(0)
        self.refs[frame] = 1
        self.dirty[frame] = 0
        self.in_use += 1
        return frame

    def get(self, frame: int) -> None:
        self.refs[frame] += 1

    def put(self, frame: int) -> None:
        """Drops a reference; the last one returns the frame (zeroed) to the free list."""
        if frame == ZERO_FRAME:
            return
        refs = self.refs[frame] - 1
        self.refs[frame] = refs
        if refs == 0:
            offset = frame * PAGE_SIZE
            self._mem.madvise(mmap.MADV_DONTNEED, offset, PAGE_SIZE)
            self.dirty[frame] = 0
            self._free.append(frame)
            self.in_use -= 1

    def poison(self, frame: int) -> bool:
        """``TestSetPageHWPoison``: marks ``frame`` poisoned for good (it takes a reference that is
        never dropped); False if it already was."""
        if frame in self.poisoned:
            return False
        self.poisoned.add(frame)
        self.get(frame)
        return True

    def copy(self, dst: int, src: int) -> None:
        """Copies a whole page."""
        d, s = dst * PAGE_SIZE, src * PAGE_SIZE
        self.view[d:d + PAGE_SIZE] = self.view[s:s + PAGE_SIZE]

    def read(self, frame: int, offset: int, n: int) -> bytes:
        start = frame * PAGE_SIZE + offset
        return bytes(self.view[start:start + n])

    def write(self, frame: int, offset: int, data: bytes | memoryview) -> None:
        start = frame * PAGE_SIZE + offset
        self.view[start:start + len(data)] = data

    def zero(self, frame: int, offset: int = 0, n: int = PAGE_SIZE) -> None:
        start = frame * PAGE_SIZE + offset
        self.view[start:start + n] = bytes(n)


_pool: FramePool | None = None


def pool() -> FramePool:
    """The frame pool, created on first use."""
    global _pool
    if _pool is None:
        _pool = FramePool()
    return _pool
