"""Anonymous-memory identity: ``anon_vma`` objects and each VMA's ``anon_vma_chain`` (mm/rmap.c).

The model keeps them for one reason: they decide which VMAs Linux merges.  A VMA gets an anon_vma on
its first write fault (or reuses a compatible neighbour's, ``find_mergeable_anon_vma``); splits clone
the chain; fork gives the child a chain one longer than the parent's; ``is_mergeable_anon_vma`` (the one
anon_vma merge rule of every merge path: mmap, brk, mremap, mprotect/mlock/madvise) refuses a merge
that would share a fork child's anon_vma.
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


def is_fork_child(vma: Vma | None) -> bool:
    """``vma_is_fork_child`` (6.18 mm/vma.c): a faulted VMA whose anon_vma chain is not singular
    (inherited across fork, or split from such a VMA)."""
    return vma is not None and vma.anon_vma is not None and len(vma.chain) != 1


def is_mergeable_anon_vma(tgt: Vma, src_anon: AnonVma | None, src: Vma | None = None,
                          copied_from: Vma | None = None) -> bool:
    """``is_mergeable_anon_vma`` (6.18 mm/vma.c, commit 879bca0a2c4f "fix incorrectly disallowed
    anonymous VMA merges" and the copied_from fix): may the range carrying ``src_anon`` merge into
    the neighbour ``tgt``?  ``src`` is the VMA being modified (``vmg->middle``, existing-range merges
    only: mprotect, mlock, madvise), ``copied_from`` the VMA mremap copies (``copy_vma``).

    1. ``tgt`` unfaulted, range faulted: ``tgt`` will take the range's anon_vma (``dup_anon_vma``)
       unless ``src`` or ``copied_from`` is a fork child.  (6.12 refused this case outright.)
    2. ``tgt`` faulted, range unfaulted: ``tgt``'s anon_vma is used unless ``tgt`` is a fork child.
    3. otherwise the anon_vmas must be the same (both None included).

    A new mmap/brk range carries no anon_vma, so only rule 2 can refuse it (verified on 6.18:
    tests/test_merge.py)."""
    tgt_anon = tgt.anon_vma
    if tgt_anon is None and src_anon is not None:
        return not is_fork_child(src) and not is_fork_child(copied_from)
    if tgt_anon is not None and src_anon is None:
        return not is_fork_child(tgt)
    return src_anon is tgt_anon


def anon_vmas_mergeable(prev: Vma, nxt: Vma) -> bool:
    """``can_vma_merge_right``'s 3-way test (mm/vma.c): when the range can merge with both ``prev``
    and ``nxt``, their own anon_vmas must also be compatible — one missing, or the same; otherwise
    only ``prev`` merges."""
    return prev.anon_vma is None or nxt.anon_vma is None or prev.anon_vma is nxt.anon_vma


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
