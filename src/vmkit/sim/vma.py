"""``struct vm_area_struct`` and the ordered set of them (the kernel's maple tree).

:class:`VmaSet` keeps VMAs sorted by start in a :class:`sortedcontainers.SortedKeyList`: lookup,
insertion and removal are O(log n), so 65,530 VMAs cost little more per call than a few.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator

from sortedcontainers import SortedKeyList

from vmkit.sim.anon import AnonVma
from vmkit.sim.fs import OpenFile
from vmkit.sim.vmflags import VM_DROPPABLE, VM_HUGETLB, VM_SHARED, VM_SPECIAL


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

    @property
    def supports_mlock(self) -> bool:
        """``vma_supports_mlock`` (mm/internal.h): not VM_SPECIAL ([vvar], [vdso]...), not
        VM_DROPPABLE, not hugetlb (DAX and the gate VMA are not modelled as VMAs)."""
        return not self.flags & (VM_SPECIAL | VM_DROPPABLE | VM_HUGETLB) and self.special is None

    def duplicate(self) -> Vma:
        """``vm_area_dup``: the same attributes (anon_vma pointer included, chain empty)."""
        new = Vma(self.start, self.end, self.pgoff, self.flags, self.file, self.special, self.anonymous)
        new.anon_vma = self.anon_vma
        return new

    def __repr__(self) -> str:
        return f"<Vma {self.start:#x}-{self.end:#x} flags={self.flags:#x} pgoff={self.pgoff:#x}>"


#: The sorted list's load factor (sublist length between it and twice it).
SUBLIST_LOAD = 128


class VmaSet:
    """VMAs ordered by address, with ``find_vma`` semantics."""

    def __init__(self) -> None:
        self._list: SortedKeyList = SortedKeyList(key=lambda v: v.start)
        # sublists of 128 to 256 VMAs: a sublist the gap search must scan stays short
        self._list._reset(SUBLIST_LOAD)
        #: The gap index, parallel to the sorted list's sublists: for each, a bound on the largest
        #: ``w.start - u.end`` over its VMAs ``w`` and their predecessors ``u`` (-1 if none), or
        #: None when it must be recomputed.  A bound never below the true largest gap (the
        #: invariant checker verifies it): insertions and removals invalidate the entries whose gaps
        #: they change; a VMA growing in place (``end`` up, a merge) only makes gaps smaller, so the
        #: bound stays valid, and a scan that finds the true value records it; ``end`` moving down
        #: in place is always followed by the re-insertion or removal of the next VMA (split, merge)
        #: or must be reported with :meth:`end_changed`.  Searches compare actual gaps, so their
        #: answers are exact either way.
        self._gapmax: list[int | None] = []

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self) -> Iterator[Vma]:
        return iter(self._list)

    def add(self, vma: Vma) -> None:
        sl = self._list
        lists = sl._lists
        count = len(lists)
        pos = min(bisect_right(sl._maxes, vma.start), count - 1)  # the sublist it goes into
        sl.add(vma)
        if len(lists) == count:
            self._invalidate(pos)
        elif not count:  # the first sublist
            self._gapmax = [None]
        else:  # the sublist was split in two
            self._reindex(pos, pos + 1, len(lists) - count)

    def remove(self, vma: Vma) -> None:
        sl = self._list
        pos = bisect_left(sl._maxes, vma.start)
        lists = sl._lists
        count, sub, size = len(lists), lists[pos], len(lists[pos])
        sl.remove(vma)
        if len(lists) == count and lists[pos] is sub and len(sub) == size - 1:
            self._invalidate(pos)
        elif not lists:
            self._gapmax = []
        else:  # the sublist was merged into its predecessor (the first into the second), maybe split again
            pos = pos or 1
            self._reindex(pos - 1, pos + 1, len(lists) - count)

    def _reindex(self, a: int, b: int, d: int) -> None:
        """After a restructuring of the sublists: those before ``a`` are as they were, those from
        ``b`` on (old positions) hold the same VMAs at positions moved by ``d``; the entries in
        between, and the first one after them (its first gap may have changed), are recomputed."""
        gapmax = self._gapmax
        new = gapmax[:a] + [None] * (b + d - a) + gapmax[b:]
        if b + d < len(new):
            new[b + d] = None
        self._gapmax = new

    def end_changed(self, vma: Vma) -> None:
        """``vma.end`` moved down in place while its successor stays: the gap after it grew.  (Not
        needed when the successor is then removed or re-added, as splits and merges do.)"""
        self._invalidate(bisect_left(self._list._maxes, vma.start))  # the sublist holding vma

    def _invalidate(self, pos: int) -> None:
        """The gaps next to a VMA of sublist ``pos`` changed: its entry and the next sublist's (whose
        first gap follows this sublist's last VMA)."""
        gapmax = self._gapmax
        gapmax[pos] = None
        if pos + 1 < len(gapmax):
            gapmax[pos + 1] = None

    # The walks below use the sorted list's two-level layout (``_lists``: sublists of VMAs,
    # ``_keys``: their starts, ``_maxes``: the last start of each sublist) and address VMAs by
    # (sublist, index) coordinates: a bisection of ``_maxes`` and one of a sublist, O(log n), never
    # the positional index that ``SortedKeyList[i]`` rebuilds after every insertion or removal.

    def _locate(self, addr: int) -> tuple[int, int] | None:
        """Coordinates of the first VMA with ``end > addr``, or None."""
        sl = self._list
        maxes = sl._maxes
        if not maxes:
            return None
        lists = sl._lists
        pos = bisect_right(maxes, addr)
        if pos == len(maxes):
            pos -= 1
            idx = len(lists[pos])
        else:
            idx = bisect_right(sl._keys[pos], addr)
        # the VMA before (pos, idx) is the last one starting at or below addr
        if idx:
            if lists[pos][idx - 1].end > addr:
                return pos, idx - 1
        elif pos and lists[pos - 1][-1].end > addr:
            return pos - 1, len(lists[pos - 1]) - 1
        if idx == len(lists[pos]):
            return None  # only past the last sublist's end
        return pos, idx

    def _coords(self, vma: Vma) -> tuple[int, int]:
        """Coordinates of ``vma`` itself (ValueError if it is not in the set)."""
        sl = self._list
        maxes = sl._maxes
        start = vma.start
        pos = bisect_left(maxes, start)
        if pos < len(maxes):
            keys, lst = sl._keys[pos], sl._lists[pos]
            idx = bisect_left(keys, start)
            while idx < len(lst) and keys[idx] == start:
                if lst[idx] is vma:
                    return pos, idx
                idx += 1
        # equal starts spanning sublists (never while VMAs do not overlap): the library's own search
        i = sl.index(vma)
        return sl._pos(i)

    def _ascending(self, pos: int, idx: int) -> Iterator[Vma]:
        lists = self._list._lists
        while pos < len(lists):
            lst = lists[pos]
            while idx < len(lst):
                yield lst[idx]
                idx += 1
            pos += 1
            idx = 0

    def find(self, addr: int) -> Vma | None:
        """``find_vma``: the first VMA with ``end > addr`` (it may start above ``addr``)."""
        loc = self._locate(addr)
        return None if loc is None else self._list._lists[loc[0]][loc[1]]

    def lookup(self, addr: int) -> Vma | None:
        """``vma_lookup``: the VMA containing ``addr``."""
        vma = self.find(addr)
        return vma if vma is not None and vma.start <= addr else None

    def prev(self, vma: Vma) -> Vma | None:
        pos, idx = self._coords(vma)
        lists = self._list._lists
        if idx:
            return lists[pos][idx - 1]
        return lists[pos - 1][-1] if pos else None

    def next(self, vma: Vma) -> Vma | None:
        pos, idx = self._coords(vma)
        lists = self._list._lists
        if idx + 1 < len(lists[pos]):
            return lists[pos][idx + 1]
        return lists[pos + 1][0] if pos + 1 < len(lists) else None

    def below(self, addr: int) -> Vma | None:
        """The last VMA starting below ``addr``."""
        return next(self.descending_from(addr), None)

    def overlapping(self, start: int, end: int) -> list[Vma]:
        """VMAs intersecting [start, end), in order."""
        out = []
        loc = self._locate(start)
        if loc is None:
            return out
        for vma in self._ascending(*loc):
            if vma.start >= end:
                break
            out.append(vma)
        return out

    def descending_from(self, addr: int) -> Iterator[Vma]:
        """VMAs starting below ``addr``, highest first."""
        sl = self._list
        maxes, lists = sl._maxes, sl._lists
        pos = bisect_left(maxes, addr)
        if pos == len(maxes):
            if not maxes:
                return
            pos -= 1
            idx = len(lists[pos]) - 1
        else:
            idx = bisect_left(sl._keys[pos], addr) - 1
        while pos >= 0:
            lst = lists[pos]
            while idx >= 0:
                yield lst[idx]
                idx -= 1
            pos -= 1
            if pos >= 0:
                idx = len(lists[pos]) - 1

    def ascending_from(self, addr: int) -> Iterator[Vma]:
        """VMAs ending above ``addr``, lowest first."""
        loc = self._locate(addr)
        if loc is not None:
            yield from self._ascending(*loc)

    # --- the gap index (the maple tree's gap augmentation, for unmapped_area_topdown) ----------

    def _last_below(self, addr: int) -> tuple[int, int] | None:
        """Coordinates of the last VMA starting below ``addr``, or None."""
        sl = self._list
        maxes = sl._maxes
        if not maxes:
            return None
        pos = bisect_left(maxes, addr)
        if pos == len(maxes):
            pos -= 1
            return pos, len(sl._lists[pos]) - 1
        idx = bisect_left(sl._keys[pos], addr) - 1
        if idx >= 0:
            return pos, idx
        return (pos - 1, len(sl._lists[pos - 1]) - 1) if pos else None

    def _block_gap(self, pos: int) -> int:
        gap = self._gapmax[pos]
        if gap is None:
            lists = self._list._lists
            lst = lists[pos]
            gap = -1
            if pos:
                gap = lst[0].start - lists[pos - 1][-1].end
            prev_end = lst[0].end
            for i in range(1, len(lst)):
                v = lst[i]
                if v.start - prev_end > gap:
                    gap = v.start - prev_end
                prev_end = v.end
            self._gapmax[pos] = gap
        return gap

    def stale_index(self) -> list[int]:
        """For the invariant checker: the sublists whose recorded bound is below their largest gap
        (the search would miss a gap), or [-1] if the index does not match the sublists; empty when
        the gap index is sound.  Records the exact values on the way."""
        gapmax = self._gapmax
        if len(gapmax) != len(self._list._lists):
            return [-1]
        bad = []
        for pos, gap in enumerate(gapmax):
            if gap is not None:
                gapmax[pos] = None
                if self._block_gap(pos) > gap:
                    bad.append(pos)
        return bad

    def highest_gap(self, low: int, high: int, need: int) -> tuple[int, int] | None:
        """The highest free range [a, b) between VMAs, clipped to [low, high), with ``b - a >= need``
        (``need`` > 0): the first range the top-down walk (highest first) would
        accept, found with the gap index in O(log n) plus the sublists it skips."""
        lists = self._list._lists
        top = self._last_below(high)
        if top is None:
            return (low, high) if high - low >= need else None
        p1, i1 = top
        v1 = lists[p1][i1]
        if v1.end < high:
            a = max(v1.end, low)
            if high - a >= need:
                return a, high
        if v1.start <= low:
            return None
        # pairs (u, w) of neighbours, w from v1 down, while u starts above low: unclipped gaps
        bottom = self._last_below(low + 1)  # the first VMA the walk reaches that starts <= low
        if bottom is None:
            lo_pos, lo_idx = 0, 1  # w from the second VMA (u = the first)
        else:
            lo_pos, lo_idx = bottom
            lo_idx += 2  # w two after the bottom VMA (u one after it)
            while lo_pos < len(lists) and lo_idx >= len(lists[lo_pos]):
                lo_idx -= len(lists[lo_pos])
                lo_pos += 1
        pos, idx = p1, i1
        gapmax = self._gapmax
        while pos > lo_pos or pos == lo_pos and idx >= lo_idx:
            lst = lists[pos]
            first = lo_idx if pos == lo_pos else 0
            known = gapmax[pos]
            # a sublist's largest gap bounds any part of it; one not known is scanned directly (no
            # dearer than computing it), and a full scan that finds nothing records it
            if known is None or known >= need:
                whole = first == 0 and idx == len(lst) - 1
                best = -1
                while idx >= first:
                    w = lst[idx]
                    u = lst[idx - 1] if idx else lists[pos - 1][-1]
                    gap = w.start - u.end
                    if gap >= need:
                        return u.end, w.start
                    if gap > best:
                        best = gap
                    idx -= 1
                if whole:
                    gapmax[pos] = best
            pos -= 1
            if pos >= 0:
                idx = len(lists[pos]) - 1
        # the last range the walk looks at: above the bottom VMA, or below the lowest VMA
        if bottom is None:
            b = lists[0][0].start
            return (low, b) if b - low >= need else None
        bp, bi = bottom
        u = lists[bp][bi]
        w = lists[bp][bi + 1] if bi + 1 < len(lists[bp]) else lists[bp + 1][0]
        a = max(u.end, low)
        return (a, w.start) if w.start - a >= need else None
