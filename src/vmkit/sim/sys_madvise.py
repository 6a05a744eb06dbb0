"""madvise(2): mm/madvise.c ``do_madvise``, ``madvise_walk_vmas``, ``madvise_vma_behavior`` (6.18).

Rules (kernel-rules.md §14, machine-facts.md §9):

* ``madvise_should_skip``: an advice outside ``madvise_behavior_valid`` → EINVAL (HWPOISON and
  SOFT_OFFLINE too: no CONFIG_MEMORY_FAILURE); ``start`` not page-aligned, a nonzero ``len`` that
  rounds to 0, or ``start + len`` wrapping → EINVAL; an empty range → 0, before any VMA lookup.
* With ``Kernel(memory_failure=True)`` (CONFIG_MEMORY_FAILURE) HWPOISON and SOFT_OFFLINE are valid
  and go to ``madvise_inject_error``: CAP_SYS_ADMIN or EPERM, then page by page from ``start`` to
  ``start + len`` (``get_user_pages_fast``, a read fault; its error is the result): HWPOISON
  poisons the page (``memory_failure``; later accesses fault with SIGBUS BUS_MCEERR_AR, and a dirty
  page also sends that SIGBUS to the caller as the call returns), SOFT_OFFLINE migrates it to
  another frame (``soft_offline_page``; contents kept, no fault).  Only anonymous pages are modelled.
* POPULATE_READ/WRITE fault the range in (``madvise_populate``); every other advice walks the VMAs
  (``madvise_walk_vmas``): holes are skipped and the advice is applied to every VMA present, the
  first per-VMA error stops the walk, and a hole met on the way makes the result ENOMEM.
* Per VMA (``madvise_vma_behavior``): a sealed read-only private anonymous VMA refuses the
  discarding advice (``can_madvise_modify``: EPERM); then each advice's own rule; attribute advice
  goes through ``madvise_update_vma`` (``vma_modify_flags``: split or merge), where ENOMEM (the
  map-count limit) becomes EAGAIN.

Swap: our machines have none, and the model never swaps.  ``Kernel(swap=...)`` only raises the
overcommit limit (RAM + swap).  Without swap MADV_COLD and MADV_PAGEOUT leave anonymous memory where
it is (no residency change, mincore stays 1) and WILLNEED has nothing to swap in; with swap
configured Linux would write exclusive anonymous pages out on PAGEOUT (mincore 0, contents back on
the next fault, smaps ``Swap``), which the model does not do: MADV_PAGEOUT meeting such a page when
``swap > 0`` raises NotImplementedError rather than pretend.  COLD is unaffected (it only ages
pages).  See docs/model.md.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vmkit.errors import BusError, SegmentationFault, os_error
from vmkit.sim.abi import BUS_MCEERR_AR
from vmkit.flags import PAGE_SIZE, Madv
from vmkit.sim.frames import ZERO_FRAME, pool
from vmkit.sim import thp
from vmkit.sim.mm import GUARD, PMD_SIZE, PTE_ANON, MemoryManager, lru_add_drain
from vmkit.sim.sys_mmap import MASK64, page_align
from vmkit.sim.vma import Vma
from vmkit.sim.vmflags import (
    VM_DONTCOPY, VM_DONTDUMP, VM_DONTEXPAND, VM_DROPPABLE, VM_HUGEPAGE, VM_HUGETLB, VM_IO,
    VM_LOCKED, VM_MAYSHARE, VM_MAYWRITE, VM_MERGEABLE, VM_MIXEDMAP, VM_NOHUGEPAGE, VM_PFNMAP,
    VM_RAND_READ, VM_SEALED, VM_SEQ_READ, VM_SHARED, VM_SPECIAL, VM_WIPEONFORK, VM_WRITE,
)

if TYPE_CHECKING:
    from vmkit.sim.fs import Inode
    from vmkit.sim.kernel import Kernel, Task

M = Madv

#: ``madvise_behavior_valid`` on our kernel (KSM and THP built in, no CONFIG_MEMORY_FAILURE).
VALID_ADVICE = frozenset({
    M.MADV_NORMAL, M.MADV_RANDOM, M.MADV_SEQUENTIAL, M.MADV_WILLNEED, M.MADV_DONTNEED,
    M.MADV_FREE, M.MADV_REMOVE, M.MADV_DONTFORK, M.MADV_DOFORK, M.MADV_MERGEABLE,
    M.MADV_UNMERGEABLE, M.MADV_HUGEPAGE, M.MADV_NOHUGEPAGE, M.MADV_DONTDUMP, M.MADV_DODUMP,
    M.MADV_WIPEONFORK, M.MADV_KEEPONFORK, M.MADV_COLD, M.MADV_PAGEOUT, M.MADV_POPULATE_READ,
    M.MADV_POPULATE_WRITE, M.MADV_DONTNEED_LOCKED, M.MADV_COLLAPSE, M.MADV_GUARD_INSTALL,
    M.MADV_GUARD_REMOVE,
})

#: The advice ``madvise_behavior_valid`` adds with CONFIG_MEMORY_FAILURE (``Kernel.memory_failure``).
MEMORY_FAILURE_ADVICE = frozenset({M.MADV_HWPOISON, M.MADV_SOFT_OFFLINE})

#: ``is_discard``: the advice a sealed read-only anonymous VMA refuses.
DISCARD_ADVICE = frozenset({
    M.MADV_FREE, M.MADV_DONTNEED, M.MADV_DONTNEED_LOCKED, M.MADV_REMOVE, M.MADV_DONTFORK,
    M.MADV_WIPEONFORK, M.MADV_GUARD_INSTALL,
})


class _LockDropped(Exception):
    """Internal: the per-VMA step dropped the mmap lock; the walk must look the next VMA up again."""


# --- entry points ---------------------------------------------------------------------------------

def sys_madvise(task: Task, start: int, len_in: int, behavior: int) -> None:
    """``SYSCALL_DEFINE3(madvise)`` → ``do_madvise`` on the caller's own mm."""
    do_madvise(task, task.mm, start, len_in, behavior)


def madvise_should_skip(start: int, len_in: int, behavior: int, memory_failure: bool = False) -> bool:
    """``madvise_should_skip``: raises EINVAL for an invalid request (``is_valid_madvise``);
    True when there is nothing to do (an empty range).  ``memory_failure``: the kernel has
    CONFIG_MEMORY_FAILURE, so HWPOISON and SOFT_OFFLINE are valid too."""
    start, len_in = start & MASK64, len_in & MASK64
    if behavior not in VALID_ADVICE and not (memory_failure and behavior in MEMORY_FAILURE_ADVICE):
        raise os_error(errno.EINVAL)
    if start & (PAGE_SIZE - 1):
        raise os_error(errno.EINVAL)
    length = page_align(len_in)
    if len_in and not length:
        raise os_error(errno.EINVAL)
    if start + length > MASK64:
        raise os_error(errno.EINVAL)
    return length == 0


def do_madvise(task: Task, mm: MemoryManager, start: int, len_in: int, behavior: int) -> None:
    """``do_madvise``: the checks, then ``madvise_do_behavior``.  ``task`` is the caller (whose
    credentials count), ``mm`` the address space advised (process_madvise may name another)."""
    if madvise_should_skip(start, len_in, behavior, task.kernel.memory_failure):
        return
    madvise_do_behavior(task, mm, start & MASK64, len_in & MASK64, behavior)


def madvise_do_behavior(task: Task, mm: MemoryManager, start: int, len_in: int, behavior: int) -> None:
    """``madvise_do_behavior``: memory-failure advice injects errors (``is_memory_failure``),
    POPULATE faults the range in, everything else walks the VMAs."""
    if behavior in MEMORY_FAILURE_ADVICE:
        madvise_inject_error(task, start, start + len_in, behavior)
        return
    end = start + page_align(len_in)
    if behavior in (M.MADV_POPULATE_READ, M.MADV_POPULATE_WRITE):
        madvise_populate(mm, start, end, behavior == M.MADV_POPULATE_WRITE)
    else:
        madvise_walk_vmas(task, mm, start, end, behavior)


def madvise_walk_vmas(task: Task, mm: MemoryManager, start: int, last_end: int, behavior: int) -> None:
    """``madvise_walk_vmas``: the advice on each VMA piece of [start, last_end); holes are skipped
    but make the result ENOMEM; the first per-VMA error is raised at once."""
    unmapped_error = 0
    vma = mm.find_vma(start)
    while True:
        if vma is None:
            raise os_error(errno.ENOMEM)
        if start < vma.start:
            unmapped_error = errno.ENOMEM
            start = vma.start
            if start >= last_end:
                break
        end = min(vma.end, last_end)
        try:
            after: Vma | None = madvise_vma_behavior(task, mm, vma, start, end, behavior)
        except _LockDropped:
            after = None
        if after is not None and end < after.end:
            end = after.end
        if end >= last_end:
            break
        vma = mm.find_vma(after.end if after is not None else end)
        start = end
    if unmapped_error:
        raise os_error(unmapped_error)


# --- per VMA ----------------------------------------------------------------------------------------

def can_madvise_modify(vma: Vma, behavior: int) -> bool:
    """``can_madvise_modify``: a sealed VMA refuses discarding advice only when it is private
    anonymous memory the caller could not write anyway."""
    if not vma.flags & VM_SEALED or behavior not in DISCARD_ADVICE:
        return True
    if vma.file is not None or vma.flags & VM_SHARED:
        return True
    return bool(vma.flags & VM_WRITE)


def madvise_vma_behavior(task: Task, mm: MemoryManager, vma: Vma, start: int, end: int,
                         behavior: int) -> Vma:
    """``madvise_vma_behavior``: applies ``behavior`` to [start, end) within ``vma``; returns the
    VMA now covering the range (a merge may have widened it), or raises _LockDropped."""
    if not can_madvise_modify(vma, behavior):
        raise os_error(errno.EPERM)
    flags = vma.flags
    new_flags = flags
    if behavior == M.MADV_REMOVE:
        madvise_remove(task.kernel, mm, vma, start, end)
        raise _LockDropped
    if behavior == M.MADV_WILLNEED:
        if madvise_willneed(vma, start, end, task.kernel.read_ahead_kb // 4):
            raise _LockDropped
        return vma
    if behavior in (M.MADV_COLD, M.MADV_PAGEOUT):
        if flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB):  # can_madv_lru_vma
            raise os_error(errno.EINVAL)
        if behavior == M.MADV_PAGEOUT:
            if not vma.anonymous and vma.flags & VM_MAYSHARE and not can_do_file_pageout(task, vma):
                return vma
            if mm.kernel.swap and swap_candidates(mm, start, end):
                raise NotImplementedError("vmkit.sim does not model swap: MADV_PAGEOUT of anonymous "
                                          "pages with Kernel(swap > 0) would swap them out")
            thp.madvise_cold_pageout_thp(mm, start, end, pageout=True)
            mm.pageout_range(vma, start, end, vma.anonymous or can_do_file_pageout(task, vma))
        else:
            thp.madvise_cold_pageout_thp(mm, start, end, pageout=False)
            lru_add_drain(mm.kernel)  # MADV_COLD only ages pages: nothing else visible without pressure
        return vma
    if behavior in (M.MADV_FREE, M.MADV_DONTNEED, M.MADV_DONTNEED_LOCKED):
        madvise_dontneed_free(mm, vma, start, end, behavior)
        return vma
    if behavior == M.MADV_COLLAPSE:
        madvise_collapse(mm, vma, start, end)
        return vma
    if behavior == M.MADV_GUARD_INSTALL:
        if flags & (VM_SPECIAL | VM_HUGETLB | VM_LOCKED):  # is_valid_guard_vma(allow_locked=false)
            raise os_error(errno.EINVAL)
        mm.install_guards(vma, start, end)
        return vma
    if behavior == M.MADV_GUARD_REMOVE:
        if flags & (VM_SPECIAL | VM_HUGETLB):  # is_valid_guard_vma(allow_locked=true)
            raise os_error(errno.EINVAL)
        mm.remove_guards(start, end)
        return vma
    if behavior == M.MADV_NORMAL:
        new_flags &= ~(VM_RAND_READ | VM_SEQ_READ)
    elif behavior == M.MADV_SEQUENTIAL:
        new_flags = (new_flags & ~VM_RAND_READ) | VM_SEQ_READ
    elif behavior == M.MADV_RANDOM:
        new_flags = (new_flags & ~VM_SEQ_READ) | VM_RAND_READ
    elif behavior == M.MADV_DONTFORK:
        new_flags |= VM_DONTCOPY
    elif behavior == M.MADV_DOFORK:
        if new_flags & VM_IO:
            raise os_error(errno.EINVAL)
        new_flags &= ~VM_DONTCOPY
    elif behavior == M.MADV_WIPEONFORK:
        if vma.file is not None or new_flags & VM_SHARED:  # anonymous memory only
            raise os_error(errno.EINVAL)
        new_flags |= VM_WIPEONFORK
    elif behavior == M.MADV_KEEPONFORK:
        if new_flags & VM_DROPPABLE:
            raise os_error(errno.EINVAL)
        new_flags &= ~VM_WIPEONFORK
    elif behavior == M.MADV_DONTDUMP:
        new_flags |= VM_DONTDUMP
    elif behavior == M.MADV_DODUMP:
        if (not flags & VM_HUGETLB and new_flags & VM_SPECIAL) or new_flags & VM_DROPPABLE:
            raise os_error(errno.EINVAL)
        new_flags &= ~VM_DONTDUMP
    elif behavior in (M.MADV_MERGEABLE, M.MADV_UNMERGEABLE):
        new_flags = ksm_madvise(vma, new_flags, behavior)
    elif behavior in (M.MADV_HUGEPAGE, M.MADV_NOHUGEPAGE):
        new_flags = hugepage_madvise(new_flags, behavior)
    try:
        return madvise_update_vma(mm, vma, start, end, new_flags)
    except OSError as e:
        if e.errno == errno.ENOMEM:  # "kernel resources temporarily unavailable"
            raise os_error(errno.EAGAIN) from None
        raise


def madvise_update_vma(mm: MemoryManager, vma: Vma, start: int, end: int, new_flags: int) -> Vma:
    """``madvise_update_vma``: nothing if the flags are unchanged, else ``vma_modify_flags`` (merge
    with a neighbour or split) and the new flags on the VMA covering [start, end)."""
    if new_flags == vma.flags:
        return vma
    oldflags = vma.flags
    vma = mm.vma_modify(vma, start, end, new_flags)
    vma.flags = new_flags
    pages = (end - start) >> 12
    mm.stat_account(oldflags, -pages)
    mm.stat_account(new_flags, pages)
    return vma


def ksm_madvise(vma: Vma, new_flags: int, behavior: int) -> int:
    """``ksm_madvise`` (mm/ksm.c): MERGEABLE sets VM_MERGEABLE on KSM-compatible VMAs (private,
    not special, not hugetlb, not droppable) and leaves the others alone; UNMERGEABLE clears it.
    ksmd is not running on our machines (``/sys/kernel/mm/ksm/run`` 0), so no page is ever merged
    and unmerging has nothing to undo."""
    if behavior == M.MADV_MERGEABLE:
        if vma.flags & VM_MERGEABLE:
            return new_flags
        if vma.flags & (VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_HUGETLB
                        | VM_MIXEDMAP | VM_DROPPABLE):  # !vma_ksm_compatible
            return new_flags
        return new_flags | VM_MERGEABLE
    if not new_flags & VM_MERGEABLE:
        return new_flags
    return new_flags & ~VM_MERGEABLE


def hugepage_madvise(new_flags: int, behavior: int) -> int:
    """``hugepage_madvise`` (mm/khugepaged.c): HUGEPAGE and NOHUGEPAGE exclude each other."""
    if behavior == M.MADV_HUGEPAGE:
        return (new_flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
    return (new_flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE


def madvise_dontneed_free(mm: MemoryManager, vma: Vma, start: int, end: int, behavior: int) -> None:
    """``madvise_dontneed_free``: ``madvise_dontneed_free_valid_vma`` (VM_PFNMAP, and VM_LOCKED
    except for DONTNEED_LOCKED → EINVAL; hugetlb: DONTNEED only, huge-page aligned start, end
    rounded down), then DONTNEED zaps the entries (``zap_page_range_single``: guard markers stay)
    and FREE, private anonymous memory only (EINVAL otherwise), marks pages lazily freeable."""
    if vma.flags & VM_HUGETLB:
        if behavior not in (M.MADV_DONTNEED, M.MADV_DONTNEED_LOCKED) or start & (PMD_SIZE - 1):
            raise os_error(errno.EINVAL)
        end &= ~(PMD_SIZE - 1)
    else:
        forbidden = VM_PFNMAP | (0 if behavior == M.MADV_DONTNEED_LOCKED else VM_LOCKED)
        if vma.flags & forbidden:
            raise os_error(errno.EINVAL)
    if start == end:
        return
    if behavior == M.MADV_FREE:
        if not vma.anonymous:  # madvise_free_single_vma
            raise os_error(errno.EINVAL)
        lru_add_drain(mm.kernel)  # madvise_free_single_vma drains the LRU batches before its walk
        drain = thp.madvise_free_thp(mm, start, end)
        mm.lazyfree_range(start, end)
        if drain:
            lru_add_drain(mm.kernel)
        return
    mm.zap_range(start, end, keep_guard=True)
    mm.reclaim_pt(start, end)  # madvise_dontneed_single_vma: details.reclaim_pt


def madvise_willneed(vma: Vma, start: int, end: int, ra_pages: int) -> bool:
    """``madvise_willneed``: anonymous memory and shmem would be swapped in (no swap: nothing);
    another file gets ``vfs_fadvise(POSIX_FADV_WILLNEED)``, which reads the pages of the range
    below EOF into the page cache of a disk file, at most max(io_pages, ra_pages) of them (2048)
    (``force_page_cache_ra``; tmpfs-like files have no readahead).  Returns True when the mmap lock was dropped (the file case)."""
    file = vma.file
    if file is None:
        return False
    inode = file.inode
    if inode.is_shmem:
        return False
    if inode.kind == "reg" and inode.mount.has_disk:
        from vmkit.sim.readahead import IO_PAGES, do_page_cache_ra

        # force_page_cache_ra: at most max(io_pages, ra_pages) pages, in 2 MiB chunks
        do_page_cache_ra(inode, vma.pgoff_at(start), min((end - start) >> 12, max(IO_PAGES, ra_pages)), 0)
    return True


def can_do_file_pageout(task: Task, vma: Vma) -> bool:
    """``can_do_file_pageout``: the caller owns the file (or has CAP_FOWNER) or may write it.
    ``madvise_pageout`` leaves a shared mapping of another file alone and pages out only the
    anonymous pages of a private one."""
    if vma.file is None:
        return False
    from vmkit.sim.sys_mincore import can_do_mincore

    return can_do_mincore(task, vma)


def madvise_remove(kernel: Kernel, mm: MemoryManager, vma: Vma, start: int, end: int) -> None:
    """``madvise_remove``: EINVAL on VM_LOCKED or without a file; EACCES unless the mapping is shared
    and may write; then ``vfs_fallocate(PUNCH_HOLE | KEEP_SIZE)`` over the file range it maps."""
    if vma.flags & VM_LOCKED:
        raise os_error(errno.EINVAL)
    if vma.file is None:
        raise os_error(errno.EINVAL)
    if vma.flags & (VM_SHARED | VM_MAYWRITE) != VM_SHARED | VM_MAYWRITE:  # vma_is_shared_maywrite
        raise os_error(errno.EACCES)
    file = vma.file
    inode = file.inode
    if not file.writable:
        raise os_error(errno.EBADF)
    if inode.kind != "reg":
        raise os_error(errno.ENODEV)
    if inode.mount.name == "hugetlbfs":
        raise NotImplementedError("vmkit.sim does not model hole punching in hugetlbfs")
    punch_hole(kernel, inode, vma.pgoff_at(start), vma.pgoff_at(end - 1))


def punch_hole(kernel: Kernel, inode: Inode, first: int, last: int) -> None:
    """``ext4_punch_hole`` / ``shmem_fallocate(PUNCH_HOLE)`` for whole pages ``first..last``:
    ``truncate_pagecache_range`` unmaps them from every shared mapping (private copies stay:
    ``even_cows`` 0), then the page cache and the blocks behind it are dropped; the size stays."""
    for task in kernel.tasks.values():
        mm = task.mm
        for vma in mm.file_vmas(inode):
            if vma.anonymous:
                continue
            lo = max(first, vma.pgoff)
            hi = min(last + 1, vma.pgoff + vma.pages)
            if lo < hi:
                mm.unmap_file_pages(vma, vma.start + ((lo - vma.pgoff) << 12),
                                    vma.start + ((hi - vma.pgoff) << 12))
    inode.drop_pages(first, last)


def madvise_collapse(mm: MemoryManager, vma: Vma, start: int, end: int) -> None:
    """``madvise_collapse`` (mm/khugepaged.c): EINVAL unless a PMD-sized THP is allowed in the VMA
    (``thp_vma_allowable_order`` without sysfs enforcement); then each whole aligned 2 MiB block of
    [start, end) collapses into one huge page; the call fails (EINVAL) unless every block did."""
    if not thp_vma_allows_pmd(vma):
        raise os_error(errno.EINVAL)
    lru_add_drain(mm.kernel)  # lru_add_drain_all
    hstart = (start + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    hend = end & ~(PMD_SIZE - 1)
    thps = 0
    last_fail = errno.EINVAL
    for haddr in range(hstart, hend, PMD_SIZE):
        if mm.huge_pmd_at(haddr) or haddr >> 21 in mm.huge_zero:
            thps += 1  # SCAN_PMD_MAPPED (the huge zero page too: pmd_trans_huge)
            continue
        err = mm.collapse_scan_pmd(vma, haddr)
        if err:
            last_fail = err
            continue
        mm.collapse_huge_pmd(vma, haddr)
        thps += 1
    # thps == ((hend - hstart) >> HPAGE_PMD_SHIFT) in unsigned arithmetic: a range inside one block
    # (hstart > hend) wraps and fails.
    if hend < hstart or thps != (hend - hstart) // PMD_SIZE:
        raise os_error(last_fail)


def thp_vma_allows_pmd(vma: Vma) -> bool:
    """``__thp_vma_allowable_orders(vma, vm_flags, 0, PMD_ORDER)`` as MADV_COLLAPSE asks it:
    not VM_NOHUGEPAGE, not special or hugetlb, a whole aligned 2 MiB block at the VMA's end, then
    shmem by ``shmem_enabled`` (never on our machines), other files only read-only
    (``file_thp_enabled``), anonymous memory once it has an anon_vma."""
    if vma.flags & VM_NOHUGEPAGE:
        return False
    if vma.flags & (VM_SPECIAL | VM_HUGETLB) or vma.special is not None:
        return False
    if not vma.anonymous:
        if ((vma.start >> 12) - vma.pgoff) % (PMD_SIZE >> 12):
            return False
    haddr = (vma.end - PMD_SIZE) & ~(PMD_SIZE - 1)
    if haddr < vma.start or haddr + PMD_SIZE > vma.end:
        return False
    if not vma.anonymous:
        assert vma.file is not None
        inode = vma.file.inode
        if inode.is_shmem or inode.kind != "reg" or vma.file.writable:
            return False  # shmem_enabled=never; a file open for writing
        raise NotImplementedError("vmkit.sim does not model MADV_COLLAPSE of read-only file pages "
                                  "(CONFIG_READ_ONLY_THP_FOR_FS)")
    return vma.anon_vma is not None


def swap_candidates(mm: MemoryManager, start: int, end: int) -> bool:
    """Whether MADV_PAGEOUT of [start, end) would reclaim an anonymous page to swap: an anonymous
    page (not the zero page) mapped only here (``madvise_cold_or_pageout_pte_range`` skips
    ``folio_maybe_mapped_shared`` ones)."""
    frames = pool()
    return any(pte & PTE_ANON and pte >> 2 != ZERO_FRAME and frames.mapcount[pte >> 2] == 1
               for _, pte in mm.present_pages(start, end))


# --- MADV_HWPOISON / MADV_SOFT_OFFLINE (CONFIG_MEMORY_FAILURE) ----------------------------------------

def madvise_inject_error(task: Task, start: int, end: int, behavior: int) -> None:
    """``madvise_inject_error`` (mm/madvise.c, ``Kernel(memory_failure=True)`` only): EPERM without
    CAP_SYS_ADMIN; then for each page from ``start`` while below ``end`` (= start + len, not
    rounded): ``get_user_pages_fast(start, 1, 0)`` on the caller's own mm (a read fault; its error,
    EFAULT for a hole, a PROT_NONE page or an already poisoned page, is the result), then
    SOFT_OFFLINE → ``soft_offline_page`` (migration), HWPOISON → ``memory_failure`` with
    MF_ACTION_REQUIRED.  A poisoned dirty page force-kills the caller: SIGBUS BUS_MCEERR_AR at the
    first such page, delivered as the call returns (before its result can be seen), raised here
    as :class:`BusError` once the loop is over."""
    if not task.capable("CAP_SYS_ADMIN"):
        raise os_error(errno.EPERM)
    mm = task.mm
    killed_at: int | None = None
    try:
        while start < end:
            _, err = mm.get_user_pages(start, 1, False)
            if err:
                raise os_error(err)
            if behavior == M.MADV_SOFT_OFFLINE:
                mm.soft_offline(start)
            elif mm.memory_failure(start) and killed_at is None:
                killed_at = start  # a second SIGBUS while the first is pending is not queued
            start += PAGE_SIZE  # page_size(compound_head(page)): THPs are not modelled here
    except OSError:
        if killed_at is None:
            raise
    if killed_at is not None:
        raise BusError(killed_at, BUS_MCEERR_AR)


# --- MADV_POPULATE_(READ|WRITE) --------------------------------------------------------------------

def madvise_populate(mm: MemoryManager, start: int, end: int, write: bool) -> None:
    """``madvise_populate`` → ``faultin_page_range`` (``__get_user_pages`` with
    FOLL_MADV_POPULATE): page by page, no VMA → ENOMEM, a VMA GUP may not touch
    (``check_vma_flags``) → EINVAL, a fault ending in SIGBUS or SIGSEGV (a guard page, past EOF)
    → EFAULT; the pages before the failure stay populated."""
    vma: Vma | None = None
    addr = start
    while addr < end:
        if vma is None or addr >= vma.end:
            vma = mm.vma_lookup(addr)
            if vma is None:
                raise os_error(errno.ENOMEM)
            if mm.check_vma_flags(vma, write, False):
                raise os_error(errno.EINVAL)
            if vma.special is not None:
                raise NotImplementedError(
                    f"vmkit.sim does not model the pages of the special mapping {vma.special}")
        if mm.pt.get(addr >> 12) == GUARD:
            raise os_error(errno.EFAULT)
        try:
            mm.fault(vma, addr, write)
        except (BusError, SegmentationFault):
            raise os_error(errno.EFAULT) from None
        addr += PAGE_SIZE


__all__ = ["do_madvise", "madvise_do_behavior", "madvise_inject_error", "madvise_should_skip",
           "sys_madvise"]
