"""Faults on file mappings: fault-around, mmap readahead and the mapping of whole folios.

Sources: mm/memory.c ``do_read_fault``, ``do_fault_around``, ``should_fault_around``,
``do_cow_fault``, ``do_shared_fault``, ``finish_fault``; mm/filemap.c ``filemap_fault``,
``do_sync_mmap_readahead``, ``do_async_mmap_readahead``, ``filemap_map_pages``,
``next_uptodate_folio``, ``filemap_map_folio_range``; mm/readahead.c ``page_cache_sync_ra``,
``page_cache_ra_unbounded``; mm/shmem.c ``shmem_fault``.  The 6.18 rules that differ from 6.12
(whole large folios mapped by fault-around and by ``finish_fault`` for every file) were established
on our machines with the native backend (tests/test_filemap.py).

Rules:

* A read fault first maps the cached neighbours of the faulting page (fault-around): a window of
  ``fault_around_bytes`` (64 KiB, 16 pages) aligned on 16 page-table entries, moved up to start at
  the VMA's start if it began before, then cut at the VMA's end and at the end of the page table.
  Only pages below EOF, in the page cache, without PG_readahead, and with an empty entry (no page,
  no guard marker) are mapped, read-only.  When the window's page table does not exist and the
  first such folio reaches the last page of the file, nothing is mapped (6.18 installs the table
  in ``filemap_map_pmd`` only for a folio it may map large).  A large folio (ext4) is mapped whole
  when it lies inside the VMA and inside one page table and ends below the last page of the file
  (tmpfs would be exempt: it has no large folios here); else only its pages inside the window
  are.  Write faults and anonymous memory never fault around.
* A page-cache miss of a disk file reads ahead (``do_sync_mmap_readahead``, with the window
  arithmetic of :mod:`vmkit.sim.readahead`), then the fault is retried (VM_FAULT_RETRY), so the
  retried read fault maps the window from the now-filled cache:
  - VM_RAND_READ (MADV_RANDOM): no readahead, only the faulting page is read;
  - VM_SEQ_READ (MADV_SEQUENTIAL): ``page_cache_sync_ra`` of ``ra_pages``: a new window at page
    0 or right after the last read(2) ([index, index + ra_pages), PG_readahead half-way), else a
    standalone read of [index, index + ra_pages);
  - otherwise read-around: [index - ra_pages / 2, + ra_pages) (from 0 at most), PG_readahead on
    the page at 3/4 of the window; after more than 100 misses not repaid by fault-around hits
    (``mmap_miss`` of the struct file) no readahead at all.
  Readahead stops at EOF, skips cached pages, and creates order-0 folios.  ``ra_pages`` is
  ``read_ahead_kb / 4`` (8 MiB on our machines: 2048 pages).
* A fault that finds the page carrying PG_readahead (which fault-around skipped) reads the next
  window ahead (``page_cache_async_ra``): the window moves past the current one, its folios are 4
  times larger than the last window's (order + 2), its end is aligned down to that size, and the
  new mark is on its first folio; the fault is then retried.  Each hit in ``filemap_fault``
  repays one ``mmap_miss``.
* tmpfs and shmem have no readahead (``shmem_fault`` allocates the faulting page only).
* read(2) reads ahead by the same window state (:func:`vmkit.sim.readahead.filemap_read`).
* ``finish_fault`` maps the whole large folio of the faulting page when it lies inside the VMA and
  one page table, does not extend past the page holding EOF, and none of its entries is used;
  else just the faulting page.  A private write fault maps a private copy of the page only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmkit.errors import BusError
from vmkit.sim import abi, readahead
from vmkit.sim.frames import pool
from vmkit.sim.vmflags import (
    VM_HUGEPAGE,
    VM_RAND_READ,
    VM_SEQ_READ,
    VM_SHARED,
    VM_WRITE,
)

if TYPE_CHECKING:
    from vmkit.sim.fs import Inode, OpenFile
    from vmkit.sim.mm import MemoryManager
    from vmkit.sim.vma import Vma

#: ``fault_around_bytes`` (64 KiB) in pages.
FAULT_AROUND_PAGES = 16
PTRS_PER_PTE = 512
#: ``MMAP_LOTSAMISS``: more misses than this and mmap read-around stops.
MMAP_LOTSAMISS = 100
PMD_PAGES = 512


def ra_pages(mm: MemoryManager) -> int:
    """``file->f_ra.ra_pages``: the disk's ``read_ahead_kb`` in pages."""
    return mm.kernel.read_ahead_kb // 4


def _vpn_of(vma: Vma, index: int) -> int:
    return (vma.start >> 12) + index - vma.pgoff


def _fits(vma: Vma, head: int, nr: int) -> bool:
    """``folio_within_vma`` and inside one page table (PMD)."""
    if head < vma.pgoff or head + nr > vma.pgoff + vma.pages:
        return False
    first = _vpn_of(vma, head)
    return first // PTRS_PER_PTE == (first + nr - 1) // PTRS_PER_PTE


def _check_folio(inode: Inode, index: int, nr: int) -> None:
    if nr >= PMD_PAGES:
        raise NotImplementedError("vmkit.sim does not model PMD mappings of PMD-sized page-cache "
                                  "folios (filemap_map_pmd / do_set_pmd)")


def _can_map_large(inode: Inode, head: int, nr: int, file_end: int) -> bool:
    """``can_map_large`` of ``filemap_map_pages``: shmem, or a folio that ends before the last page
    of the file (``file_end >= folio_next_index``), so no PTE maps past EOF."""
    return inode.is_shmem or file_end >= head + nr


def _first_folio(inode: Inode, start: int, end: int) -> tuple[int, int] | None:
    """``next_uptodate_folio`` from ``start``: the first cached folio in [start, end] without
    PG_readahead (``end`` is already clamped to the last page below EOF)."""
    index = start
    while index <= end:
        if index in inode.cache:
            head, nr = inode.folio_of(index)
            if head not in inode.ra_marks:
                return head, nr
            index = head + nr
        else:
            index += 1
    return None


def do_fault_around(mm: MemoryManager, vma: Vma, vpn: int, index: int) -> None:
    """``do_fault_around``: the window of :data:`FAULT_AROUND_PAGES` entries around ``vpn``,
    clamped to the VMA and the page table, handed to ``filemap_map_pages``."""
    pte_off = vpn % PTRS_PER_PTE
    vma_off = vpn - (vma.start >> 12)
    from_pte = max(pte_off & ~(FAULT_AROUND_PAGES - 1), pte_off - min(pte_off, vma_off))
    to_pte = min(from_pte + FAULT_AROUND_PAGES, PTRS_PER_PTE, pte_off + vma.pages - vma_off) - 1
    filemap_map_pages(mm, vma, index + from_pte - pte_off, index + to_pte - pte_off)


def filemap_map_pages(mm: MemoryManager, vma: Vma, start: int, end: int) -> None:
    """``filemap_map_pages`` over page indexes [start, end]: maps the cached, uptodate pages below
    EOF that have no PG_readahead, folio by folio (whole large folios when they fit, see the
    module rules), into empty entries only; every page looked at repays one ``mmap_miss``."""
    assert vma.file is not None
    file = vma.file
    inode = file.inode
    file_end = inode.pages() - 1
    end = min(end, file_end)
    pt = mm.pt
    counted = 0
    index = start
    first_folio = _first_folio(inode, start, end)
    if first_folio is None:
        return
    head, nr = first_folio
    if mm.pmd_none(_vpn_of(vma, start) >> 9) and not _can_map_large(inode, head, nr, file_end):
        # pmd_none: only filemap_map_pmd installs the PTE table, and it is skipped when the first
        # folio may not be mapped large (it reaches EOF); pte_offset_map_lock then finds no table
        return
    while index <= end:
        if index not in inode.cache:
            index += 1
            continue
        head, nr = inode.folio_of(index)
        folio_last = head + nr - 1
        if head in inode.ra_marks:  # next_uptodate_folio skips PG_readahead folios
            index = folio_last + 1
            continue
        _check_folio(inode, index, nr)
        first, last = index, min(folio_last, end)
        if nr > 1 and _can_map_large(inode, head, nr, file_end) and _fits(vma, head, nr):
            first, last = head, folio_last
        for i in range(first, last + 1):
            counted += 1
            vpn = _vpn_of(vma, i)
            if vpn not in pt:
                mm.install(vpn, inode.cache[i], False, False)
        index = folio_last + 1
    file.mmap_miss = max(0, file.mmap_miss - counted)


def do_sync_mmap_readahead(mm: MemoryManager, vma: Vma, file: OpenFile, index: int) -> None:
    """``do_sync_mmap_readahead`` for a page-cache miss at ``index`` (see the module rules)."""
    inode = file.inode
    window = ra_pages(mm)
    if vma.flags & VM_HUGEPAGE:
        raise NotImplementedError("vmkit.sim does not model the PMD-sized readahead of VM_HUGEPAGE "
                                  "file mappings")
    if vma.flags & VM_RAND_READ or not window:
        return
    if vma.flags & VM_SEQ_READ:
        readahead.page_cache_sync_ra(inode, file, index, window, window)
        return
    mmap_miss = file.mmap_miss
    if mmap_miss < MMAP_LOTSAMISS * 10:
        mmap_miss += 1
        file.mmap_miss = mmap_miss
    if mmap_miss > MMAP_LOTSAMISS:
        return
    readahead.read_around(inode, file, index, window)


def do_async_mmap_readahead(mm: MemoryManager, vma: Vma, file: OpenFile, index: int) -> bool:
    """``do_async_mmap_readahead`` for a page-cache hit in ``filemap_fault``: one ``mmap_miss``
    is repaid; a folio carrying PG_readahead starts asynchronous readahead
    (``page_cache_async_ra``), and the fault is then retried (True)."""
    window = ra_pages(mm)
    if vma.flags & VM_RAND_READ or not window:
        return False
    if file.mmap_miss:
        file.mmap_miss -= 1
    head, _ = file.inode.folio_of(index)
    if head not in file.inode.ra_marks:
        return False
    readahead.page_cache_async_ra(file.inode, file, index, window, window)
    return True


def filemap_fault(mm: MemoryManager, vma: Vma, addr: int, tried: bool) -> int | None:
    """``filemap_fault`` / ``shmem_fault``: the cache frame of the page at ``addr``, or None for
    VM_FAULT_RETRY (a disk file's miss: the page was read in, with readahead; or a hit that
    started asynchronous readahead).  SIGBUS at or past EOF."""
    assert vma.file is not None
    file = vma.file
    inode = file.inode
    index = vma.pgoff_at(addr)
    if index >= inode.pages():
        raise BusError(addr, abi.BUS_ADRERR)
    frame = inode.find_page(index)
    if inode.is_shmem or not inode.mount.has_disk:
        return frame if frame is not None else inode.get_page(index)
    if frame is not None:
        if not tried and do_async_mmap_readahead(mm, vma, file, index):
            return None
        return frame
    do_sync_mmap_readahead(mm, vma, file, index)
    inode.get_page(index)  # __filemap_get_folio(FGP_CREAT) + filemap_read_folio
    return None


def finish_fault(mm: MemoryManager, vma: Vma, vpn: int, index: int, frame: int, write: bool) -> None:
    """``finish_fault`` for a page-cache page: the whole large folio when it fits (module rules),
    else the faulting page.  Entries are read-only unless this is a write fault (the faulting page
    only: the model has no hardware dirty bit, so a later store to a sibling goes through
    ``do_wp_page``, which is what dirties it)."""
    assert vma.file is not None
    inode = vma.file.inode
    head, nr = inode.folio_of(index)
    _check_folio(inode, index, nr)
    writable = write and bool(vma.flags & VM_WRITE)
    pt = mm.pt
    if nr > 1 and (inode.is_shmem or inode.pages() >= head + nr) and _fits(vma, head, nr):
        vpns = [_vpn_of(vma, i) for i in range(head, head + nr)]
        if not any(v in pt for v in vpns):
            for i, v in zip(range(head, head + nr), vpns):
                mm.install(v, inode.cache[i], writable and v == vpn, False)
            return
    mm.install(vpn, frame, writable, False)


def file_fault(mm: MemoryManager, vma: Vma, addr: int, write: bool) -> int:
    """``do_read_fault`` / ``do_shared_fault`` / ``do_cow_fault`` for an empty entry of a file VMA:
    returns the frame now mapped at ``addr`` (a private copy for a private write)."""
    assert vma.file is not None
    inode = vma.file.inode
    vpn = addr >> 12
    index = vma.pgoff_at(addr)
    frame: int | None = None
    for tried in (False, True):
        if not write:
            do_fault_around(mm, vma, vpn, index)
            pte = mm.pt.get(vpn)
            if pte is not None:
                return pte >> 2
        frame = filemap_fault(mm, vma, addr, tried)
        if frame is not None:
            break
    assert frame is not None
    if vma.flags & VM_SHARED or not write:
        finish_fault(mm, vma, vpn, index, frame, write)
        if write:
            inode.mark_dirty(index)
            pool().dirty[frame] = 1
        return frame
    mm.anon_vma_prepare(vma)
    copy = pool().alloc()
    pool().copy(copy, frame)
    pool().dirty[copy] = 1
    mm.install(vpn, copy, True, True)
    return copy


__all__ = ["file_fault", "filemap_map_pages"]
