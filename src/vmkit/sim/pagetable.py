"""The page table of one address space: page number -> page-table entry, with its PTE-table pages.

:class:`PageTable` is a ``dict`` (lookups stay C-speed) that also counts its entries per block of
512 pages — the pages one PTE table maps — so that walking a range visits only the blocks that have
entries, as the kernel's page-table walk skips empty PMDs: zapping 1 GiB costs the same whether the
process has ten entries elsewhere or 60,000.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

BLOCK_SHIFT = 9  # PTRS_PER_PTE = 512
#: Ranges of at most this many pages are scanned page by page.
SMALL_RANGE = 1 << BLOCK_SHIFT


class PageTable(dict[int, int]):
    """``vpn -> pte``; every mutating ``dict`` method keeps :attr:`blocks` exact."""

    __slots__ = ("blocks",)

    def __init__(self) -> None:
        super().__init__()
        #: block number (vpn >> 9) -> how many entries it holds (never 0).
        self.blocks: dict[int, int] = {}

    def _dec(self, vpn: int) -> None:
        b = vpn >> BLOCK_SHIFT
        n = self.blocks[b] - 1
        if n:
            self.blocks[b] = n
        else:
            del self.blocks[b]

    def __setitem__(self, vpn: int, pte: int) -> None:
        if vpn not in self:
            b = vpn >> BLOCK_SHIFT
            self.blocks[b] = self.blocks.get(b, 0) + 1
        dict.__setitem__(self, vpn, pte)

    def __delitem__(self, vpn: int) -> None:
        dict.__delitem__(self, vpn)
        self._dec(vpn)

    _MISSING = object()

    def pop(self, vpn: int, default: object = _MISSING) -> object:  # type: ignore[override]
        if vpn in self:
            self._dec(vpn)
            return dict.pop(self, vpn)
        if default is PageTable._MISSING:
            raise KeyError(vpn)
        return default

    def popitem(self) -> tuple[int, int]:
        vpn, pte = dict.popitem(self)
        self._dec(vpn)
        return vpn, pte

    def setdefault(self, vpn: int, default: int) -> int:
        if vpn not in self:
            self[vpn] = default
        return dict.__getitem__(self, vpn)

    def update(self, other: Any = (), **kwargs: int) -> None:
        """Entry by entry (``kwargs`` would have str keys: not page numbers, refused)."""
        if kwargs:
            raise TypeError("page-table keys are page numbers")
        for vpn, pte in (other.items() if hasattr(other, "items") else other):
            self[vpn] = pte

    def __ior__(self, other: Any) -> PageTable:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        dict.clear(self)
        self.blocks.clear()

    def copy(self) -> PageTable:
        new = PageTable()
        dict.update(new, self)
        new.blocks.update(self.blocks)
        return new

    def blocks_exact(self) -> bool:
        """For the invariant checker: :attr:`blocks` counts exactly the entries of each block."""
        counts: dict[int, int] = {}
        for vpn in self:
            b = vpn >> BLOCK_SHIFT
            counts[b] = counts.get(b, 0) + 1
        return counts == self.blocks

    def vpns(self, first: int, last: int) -> list[int]:
        """The page numbers with an entry in [first, last), ascending: O(pages) for a small range,
        else O(blocks of the range or populated blocks, whichever is fewer) plus 512 per populated
        block in the range."""
        if last - first <= SMALL_RANGE:
            return [v for v in range(first, last) if v in self]
        bfirst, blast = first >> BLOCK_SHIFT, (last - 1) >> BLOCK_SHIFT
        blocks = self.blocks
        if blast - bfirst + 1 > len(blocks):
            populated: Iterable[int] = sorted(b for b in blocks if bfirst <= b <= blast)
        else:
            populated = [b for b in range(bfirst, blast + 1) if b in blocks]
        out: list[int] = []
        for b in populated:
            lo = max(first, b << BLOCK_SHIFT)
            hi = min(last, (b + 1) << BLOCK_SHIFT)
            out.extend(v for v in range(lo, hi) if v in self)
        return out


__all__ = ["PageTable"]
