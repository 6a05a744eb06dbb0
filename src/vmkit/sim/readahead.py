"""Readahead of page-cache misses: mm/readahead.c as 6.18 runs it for mmap faults and read(2).

``page_cache_ra_unbounded`` (order-0 folios, :meth:`Inode.readahead`), ``do_page_cache_ra``,
``page_cache_ra_order``, ``page_cache_sync_ra``, ``page_cache_async_ra``, ``get_init_ra_size``,
``get_next_ra_size``.  The window state is the struct file's ``f_ra`` (``OpenFile.ra_*``).  The
callers are mmap faults (mm/filemap.c ``do_sync_mmap_readahead``, ``do_async_mmap_readahead``,
in :mod:`vmkit.sim.filemap`), read(2) (``filemap_read``, ``filemap_get_pages``, here) and
MADV_WILLNEED (``force_page_cache_ra``).  The window arithmetic of 6.18 (orders kept in ``f_ra``,
async windows aligned to their order) was checked on our machines: 1-byte reads at pages 0, 1, 4,
20, 80 of an uncached file cache [0, 4), [4, 20), [20, 80), [80, 320), [320, 768).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmkit.flags import PAGE_SIZE
from vmkit.sim.frames import pool
from vmkit.sim.fs import MAX_PAGECACHE_ORDER

if TYPE_CHECKING:
    from vmkit.sim.fs import Inode, OpenFile

MASK64 = (1 << 64) - 1
#: ``bdi->io_pages`` of our disk: ``max_sectors_kb`` (4096) in pages.
IO_PAGES = 1024
#: ``FOLIO_BATCH_SIZE``: the folios one ``filemap_get_read_batch`` takes.
FOLIO_BATCH_SIZE = 31


def get_init_ra_size(size: int, max_pages: int) -> int:
    """``get_init_ra_size``: the first window of a sequential stream."""
    newsize = 1 << (size - 1).bit_length() if size > 1 else 1
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(cur: int, max_pages: int) -> int:
    """``get_next_ra_size``: the window ramps up by 4, then 2, up to ``max_pages``."""
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def do_page_cache_ra(inode: Inode, index: int, nr_to_read: int, lookahead: int) -> None:
    """``do_page_cache_ra``: order-0 readahead of ``nr_to_read`` pages from ``index``, cut at the
    page holding the last byte; PG_readahead goes ``lookahead`` pages before the (cut) end."""
    if not inode.size:
        return
    end_index = (inode.size - 1) >> 12
    if index > end_index:
        return
    nr_to_read = min(nr_to_read, end_index - index + 1)
    mark = index + nr_to_read - lookahead if lookahead <= nr_to_read else None
    inode.readahead(index, nr_to_read, mark)


def page_cache_ra_order(inode: Inode, file: OpenFile) -> None:
    """``page_cache_ra_order`` from ``f_ra.start``: folios of ``f_ra.order`` (capped at
    MAX_PAGECACHE_ORDER and ``ilog2(size)``, lowered to each index's alignment and so as not to
    pass EOF or the window), PG_readahead on the folio at ``start + size - async_size``; the first
    already cached page stops it and ``do_page_cache_ra`` reads the rest of the window."""
    start = index = file.ra_start
    size = file.ra_size
    if not inode.large_folios or size < 4:
        do_page_cache_ra(inode, index, size, file.ra_async)
        return
    limit = min((inode.size - 1) >> 12, index + size - 1)
    mark = index + size - file.ra_async
    new_order = min(MAX_PAGECACHE_ORDER, file.ra_order, size.bit_length() - 1)
    file.ra_order = new_order
    while index <= limit:
        order = new_order
        if index & ((1 << order) - 1):
            order = (index & -index).bit_length() - 1
        while order > 0 and index + (1 << order) - 1 > limit:
            order -= 1
        nr = 1 << order
        if any(i in inode.cache for i in range(index, index + nr)):  # ra_alloc_folio: -EEXIST
            if size > index - start:
                do_page_cache_ra(inode, index, size - (index - start), file.ra_async)
            return
        inode.add_folio(index, nr)
        if index == mark & ~(nr - 1):
            inode.ra_marks.add(index)
        index += nr


def ractl_max_pages(req_count: int, ra_pages: int) -> int:
    """``ractl_max_pages``: a request larger than the window may go up to the device's optimal
    I/O size (``io_pages``)."""
    if req_count > ra_pages and IO_PAGES > ra_pages:
        return min(req_count, IO_PAGES)
    return ra_pages


def page_cache_prev_miss(inode: Inode, index: int, max_scan: int) -> int:
    """``page_cache_prev_miss``: the highest uncached index in [index - max_scan + 1, index], else
    ``index - max_scan``; -1 (ULONG_MAX) when the scan passes below page 0."""
    for i in range(index, index - max_scan, -1):
        if i < 0:
            return -1
        if i not in inode.cache:
            return i
    return index - max_scan


def page_cache_sync_ra(inode: Inode, file: OpenFile, index: int, req_count: int,
                       ra_pages: int) -> None:
    """``page_cache_sync_ra`` for a miss at ``index`` wanting ``req_count`` pages: the start of the
    file, an oversized request, or an access right after the previous read (``f_ra.prev_pos``)
    opens a new window (``get_init_ra_size``); otherwise the cached run before ``index`` decides
    between a standalone read of the request, which leaves ``f_ra`` alone, and a window as long
    as that history (doubled when it reaches page 0)."""
    if not ra_pages:
        raise NotImplementedError("vmkit.sim does not model forced readahead (read_ahead_kb = 0)")
    max_pages = ractl_max_pages(req_count, ra_pages)
    prev_index = (file.ra_prev_pos & MASK64) >> 12
    if index == 0 or req_count > max_pages or (index - prev_index) & MASK64 <= 1:
        file.ra_start = index
        file.ra_size = get_init_ra_size(req_count, max_pages)
        file.ra_async = (file.ra_size - req_count if file.ra_size > req_count
                         else file.ra_size >> 1)
    else:
        miss = page_cache_prev_miss(inode, index - 1, max_pages)
        contig = index - miss - 1
        if contig <= req_count:  # a standalone, small random read
            do_page_cache_ra(inode, index, req_count, 0)
            return
        if miss == -1:  # cached from the start of the file: a long stream
            contig *= 2
        file.ra_start = index
        file.ra_size = min(contig + req_count, max_pages)
        file.ra_async = 1
    file.ra_order = 0
    page_cache_ra_order(inode, file)


def read_around(inode: Inode, file: OpenFile, index: int, ra_pages: int) -> None:
    """The mmap read-around of ``do_sync_mmap_readahead``: ``ra_pages`` from ``ra_pages / 2``
    before ``index``, PG_readahead at 3/4, order-0 folios."""
    file.ra_start = max(0, index - ra_pages // 2)
    file.ra_size = ra_pages
    file.ra_async = ra_pages // 4
    file.ra_order = 0
    page_cache_ra_order(inode, file)


def page_cache_async_ra(inode: Inode, file: OpenFile, index: int, req_count: int,
                        ra_pages: int) -> None:
    """``page_cache_async_ra`` for an access at ``index`` to the folio carrying PG_readahead: the
    mark is cleared; at the expected index the window moves past the current one, else it is
    rebuilt from the cached run after ``index``; the folio order grows by 2 and the window's end
    is aligned down to that order (at most ``ffs(max_pages)``)."""
    head, nr = inode.folio_of(index)
    inode.ra_marks.discard(head)
    max_pages = ractl_max_pages(req_count, ra_pages)
    expected = (file.ra_start + file.ra_size - file.ra_async) & ~(nr - 1)
    if index == expected:
        file.ra_start += file.ra_size
        file.ra_size = max(file.ra_size, get_next_ra_size(file.ra_size, max_pages))
    else:
        start = page_cache_next_miss(inode, index + 1, max_pages)
        if not start or start - index > max_pages:
            return
        file.ra_start = start
        file.ra_size = get_next_ra_size(start - index + req_count, max_pages)
    # readit: the order grows by 2 and the window's end is aligned down to it
    file.ra_order += 2
    align = 1 << min(file.ra_order, (max_pages & -max_pages).bit_length() - 1)
    end = file.ra_start + file.ra_size
    aligned_end = end & ~(align - 1)
    if aligned_end > file.ra_start:
        file.ra_size -= end - aligned_end
    file.ra_async = file.ra_size
    page_cache_ra_order(inode, file)


def _read_batch(inode: Inode, index: int, last: int) -> list[tuple[int, int]]:
    """``filemap_get_read_batch``: the cached folios from the one holding ``index`` on, up to page
    ``last``, stopping at a gap, after a folio with PG_readahead, or at 31 folios."""
    batch: list[tuple[int, int]] = []
    while index <= last and index in inode.cache:
        head, nr = inode.folio_of(index)
        batch.append((head, nr))
        if head in inode.ra_marks or len(batch) == FOLIO_BATCH_SIZE:
            break
        index = head + nr
    return batch


def filemap_read(file: OpenFile, n: int, pos: int, ra_pages: int) -> bytes:
    """``filemap_read`` (read/pread of a disk file): each batch of cached folios is read; a miss
    first reads ahead (``page_cache_sync_ra`` for the rest of the request), and a batch ending on
    a PG_readahead folio reads the next window ahead (``page_cache_async_ra``).  The position
    after the last byte read becomes ``f_ra.prev_pos``."""
    inode = file.inode
    out = bytearray()
    last_pos = file.ra_prev_pos
    count = n
    while count > 0 and pos < inode.size:
        index = pos >> 12
        last_index = (pos + count + PAGE_SIZE - 1) >> 12
        batch = _read_batch(inode, index, last_index - 1)
        if not batch:
            page_cache_sync_ra(inode, file, index, last_index - index, ra_pages)
            batch = _read_batch(inode, index, last_index - 1)
        if not batch:  # filemap_create_folio
            inode.get_page(index)
            batch = [(index, 1)]
        head, _ = batch[-1]
        if head in inode.ra_marks:  # filemap_readahead
            page_cache_async_ra(inode, file, head, last_index - head, ra_pages)
        end = min(inode.size, pos + count)
        for head, nr in batch:
            if end <= head * PAGE_SIZE:
                break
            take = min(end, (head + nr) * PAGE_SIZE) - pos
            while take > 0:
                i, inpage = divmod(pos, PAGE_SIZE)
                piece = min(PAGE_SIZE - inpage, take)
                out += pool().read(inode.cache[i], inpage, piece)
                pos += piece
                count -= piece
                take -= piece
            last_pos = pos
    file.ra_prev_pos = last_pos
    return bytes(out)


def page_cache_next_miss(inode: Inode, index: int, max_scan: int) -> int:
    """``page_cache_next_miss``: the first uncached index of [index, index + max_scan), else
    ``index + max_scan``."""
    for i in range(index, index + max_scan):
        if i not in inode.cache:
            return i
    return index + max_scan


__all__ = ["filemap_read", "page_cache_async_ra", "page_cache_sync_ra", "read_around"]
