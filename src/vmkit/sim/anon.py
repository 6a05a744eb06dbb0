"""Anonymous-memory identity: ``anon_vma`` objects and each VMA's ``anon_vma_chain`` (mm/rmap.c).

The model keeps them for one reason: they decide which VMAs Linux merges.  A VMA gets an anon_vma on
its first write fault (or reuses a compatible neighbour's, ``find_mergeable_anon_vma``); splits clone
the chain; fork gives the child a chain one longer than the parent's; ``is_mergeable_anon_vma``
refuses to merge a VMA without an anon_vma into a neighbour whose chain is not singular.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmkit.sim.vma import Vma

_ids = itertools.count(1)


class AnonVma:
    """``struct anon_vma``: the counters ``anon_vma_clone`` and ``unlink_anon_vmas`` consult."""

    __slots__ = ("id", "parent", "num_children", "num_active_vmas", "users")

    def __init__(self, parent: AnonVma | None = None) -> None:
        self.id = next(_ids)
        self.parent = parent if parent is not None else self
        self.num_children = 0
        self.num_active_vmas = 0
        #: Number of chain entries (VMAs) linking this anon_vma (its interval tree's size).
        self.users = 0

    def __repr__(self) -> str:
        return f"<anon_vma {self.id} children={self.num_children} active={self.num_active_vmas}>"


def chain_assign(vma: Vma, anon_vma: AnonVma) -> None:
    """``anon_vma_chain_assign``: links at the head of the VMA's chain (newest first)."""
    vma.chain.insert(0, anon_vma)
    anon_vma.users += 1


def anon_vma_prepare(vma: Vma, prev: Vma | None, next_: Vma | None) -> None:
    """``__anon_vma_prepare`` (mm/rmap.c): on the first fault needing one, reuse the next or previous
    neighbour's anon_vma (``find_mergeable_anon_vma``) or allocate a root."""
    if vma.anon_vma is not None:
        return
    anon_vma = None
    if next_ is not None:
        anon_vma = reusable_anon_vma(next_, vma, next_)
    if anon_vma is None and prev is not None:
        anon_vma = reusable_anon_vma(prev, prev, vma)
    if anon_vma is None:
        anon_vma = AnonVma()
        anon_vma.num_children += 1  # self-parent link for a new root
    vma.anon_vma = anon_vma
    chain_assign(vma, anon_vma)
    anon_vma.num_active_vmas += 1


def is_mergeable_anon_vma(a1: AnonVma | None, a2: AnonVma | None, vma: Vma | None) -> bool:
    """``is_mergeable_anon_vma`` (mm/vma.c): equal, or one missing while ``vma`` is no fork child."""
    if (a1 is None or a2 is None) and (vma is None or len(vma.chain) == 1):
        return True
    return a1 is a2


def anon_vma_clone(dst: Vma, src: Vma) -> None:
    """``anon_vma_clone`` (mm/rmap.c): ``dst`` links every anon_vma of ``src``'s chain; a fork child
    reuses one that has no active VMA and fewer than two children."""
    for anon_vma in reversed(src.chain):
        chain_assign(dst, anon_vma)
        if (dst.anon_vma is None and src.anon_vma is not None and anon_vma.num_children < 2
                and anon_vma.num_active_vmas == 0):
            dst.anon_vma = anon_vma
    if dst.anon_vma is not None:
        dst.anon_vma.num_active_vmas += 1


def anon_vma_fork(vma: Vma, pvma: Vma) -> None:
    """``anon_vma_fork`` (mm/rmap.c): the child VMA links the parent's chain plus a new anon_vma."""
    vma.chain = []
    vma.anon_vma = None
    if pvma.anon_vma is None:
        return
    anon_vma_clone(vma, pvma)
    if vma.anon_vma is not None:
        return
    anon_vma = AnonVma(parent=pvma.anon_vma)
    anon_vma.num_active_vmas += 1
    vma.anon_vma = anon_vma
    chain_assign(vma, anon_vma)
    pvma.anon_vma.num_children += 1


def unlink_anon_vmas(vma: Vma) -> None:
    """``unlink_anon_vmas`` (mm/rmap.c): drop the VMA's chain; an anon_vma left with no user stops
    counting as its parent's child."""
    for anon_vma in vma.chain:
        anon_vma.users -= 1
        if anon_vma.users == 0:
            anon_vma.parent.num_children -= 1
    if vma.anon_vma is not None:
        vma.anon_vma.num_active_vmas -= 1
    vma.anon_vma = None
    vma.chain = []


def anon_vma_compatible(a: Vma, b: Vma) -> bool:
    """``anon_vma_compatible`` (mm/vma.c): adjacent, same file, flags equal but for access bits,
    linear pgoff."""
    from vmkit.sim.vmflags import VM_ACCESS_FLAGS, VM_SOFTDIRTY

    return (
        a.end == b.start
        and a.file is b.file
        and not ((a.flags ^ b.flags) & ~(VM_ACCESS_FLAGS | VM_SOFTDIRTY))
        and b.pgoff == a.pgoff + ((b.start - a.start) >> 12)
    )


def reusable_anon_vma(old: Vma, a: Vma, b: Vma) -> AnonVma | None:
    """``reusable_anon_vma``: ``old``'s anon_vma, if a/b are compatible and old is no fork child."""
    if anon_vma_compatible(a, b) and old.anon_vma is not None and len(old.chain) == 1:
        return old.anon_vma
    return None
