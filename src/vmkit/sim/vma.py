"""``struct vm_area_struct`` and the ordered set of them (the kernel's maple tree).

:class:`VmaSet` keeps VMAs sorted by start in a :class:`sortedcontainers.SortedKeyList`: lookup,
insertion and removal are O(log n), so 65,530 VMAs cost little more per call than a few.
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedKeyList

from vmkit.sim.anon import AnonVma
from vmkit.sim.fs import OpenFile
from vmkit.sim.vmflags import VM_SHARED


class Vma:
    """One mapping: [start, end), pgoff, VM_* flags, the file (struct file identity), anon identity."""

    __slots__ = ("start", "end", "pgoff", "flags", "file", "anon_vma", "chain", "special", "anonymous")

    def __init__(self, start: int, end: int, pgoff: int, flags: int, file: OpenFile | None = None,
                 special: str | None = None, anonymous: bool | None = None) -> None:
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.flags = flags
        self.file = file
        self.anon_vma: AnonVma | None = None
        #: ``anon_vma_chain``, newest first.
        self.chain: list[AnonVma] = []
        #: The name of a special mapping ([vdso], [vvar]...), which has its own ``vm_ops``.
        self.special = special
        #: ``vma_is_anonymous``: no ``vm_ops`` (private anonymous memory, private /dev/zero).
        self.anonymous = (file is None and special is None) if anonymous is None else anonymous

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> 12

    def pgoff_at(self, addr: int) -> int:
        """The file page index (or anonymous pgoff) that ``addr`` maps."""
        return self.pgoff + ((addr - self.start) >> 12)

    @property
    def shared(self) -> bool:
        return bool(self.flags & VM_SHARED)

    def duplicate(self) -> Vma:
        """``vm_area_dup``: the same attributes (anon_vma pointer included, chain empty)."""
        new = Vma(self.start, self.end, self.pgoff, self.flags, self.file, self.special, self.anonymous)
        new.anon_vma = self.anon_vma
        return new

    def __repr__(self) -> str:
        return f"<Vma {self.start:#x}-{self.end:#x} flags={self.flags:#x} pgoff={self.pgoff:#x}>"


class VmaSet:
    """VMAs ordered by address, with ``find_vma`` semantics."""

    def __init__(self) -> None:
        self._list: SortedKeyList = SortedKeyList(key=lambda v: v.start)

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self) -> Iterator[Vma]:
        return iter(self._list)

    def add(self, vma: Vma) -> None:
        self._list.add(vma)

    def remove(self, vma: Vma) -> None:
        self._list.remove(vma)

    def _index_of_first_ending_after(self, addr: int) -> int:
        i = self._list.bisect_key_right(addr) - 1
        if i >= 0 and self._list[i].end > addr:
            return i
        return i + 1

    def find(self, addr: int) -> Vma | None:
        """``find_vma``: the first VMA with ``end > addr`` (it may start above ``addr``)."""
        i = self._index_of_first_ending_after(addr)
        return self._list[i] if i < len(self._list) else None

    def lookup(self, addr: int) -> Vma | None:
        """``vma_lookup``: the VMA containing ``addr``."""
        vma = self.find(addr)
        return vma if vma is not None and vma.start <= addr else None

    def prev(self, vma: Vma) -> Vma | None:
        i = self._list.index(vma)
        return self._list[i - 1] if i > 0 else None

    def next(self, vma: Vma) -> Vma | None:
        i = self._list.index(vma)
        return self._list[i + 1] if i + 1 < len(self._list) else None

    def below(self, addr: int) -> Vma | None:
        """The last VMA starting below ``addr``."""
        i = self._list.bisect_key_left(addr) - 1
        return self._list[i] if i >= 0 else None

    def overlapping(self, start: int, end: int) -> list[Vma]:
        """VMAs intersecting [start, end), in order."""
        out = []
        i = self._index_of_first_ending_after(start)
        while i < len(self._list):
            vma = self._list[i]
            if vma.start >= end:
                break
            out.append(vma)
            i += 1
        return out

    def descending_from(self, addr: int) -> Iterator[Vma]:
        """VMAs starting below ``addr``, highest first."""
        i = self._list.bisect_key_left(addr) - 1
        while i >= 0:
            yield self._list[i]
            i -= 1

    def ascending_from(self, addr: int) -> Iterator[Vma]:
        """VMAs ending above ``addr``, lowest first."""
        i = self._index_of_first_ending_after(addr)
        while i < len(self._list):
            yield self._list[i]
            i += 1
