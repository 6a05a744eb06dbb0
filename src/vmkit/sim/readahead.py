"""Readahead of page-cache misses in file faults: mm/readahead.c as 6.18 runs it for mmap.

``page_cache_ra_unbounded`` (order-0 folios, :meth:`Inode.readahead`), ``do_page_cache_ra``,
``page_cache_ra_order``, ``page_cache_sync_ra``, ``page_cache_async_ra``, ``get_init_ra_size``,
``get_next_ra_size``.  The window state is the struct file's ``f_ra`` (``OpenFile.ra_*``).  Only the
mmap fault callers are modelled (mm/filemap.c ``do_sync_mmap_readahead``,
``do_async_mmap_readahead``); read(2) does no readahead in the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmkit.sim.fs import MAX_PAGECACHE_ORDER

if TYPE_CHECKING:
    from vmkit.sim.fs import Inode, OpenFile


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


def page_cache_sync_ra(inode: Inode, file: OpenFile, index: int, req_count: int,
                       max_pages: int) -> None:
    """``page_cache_sync_ra`` for a VM_SEQ_READ fault: at page 0 the initial window (the
    struct file has no read history in the model, so no other miss counts as sequential);
    elsewhere a standalone read of ``req_count`` pages that leaves ``f_ra`` alone."""
    if index == 0 or req_count > max_pages:
        file.ra_start = index
        file.ra_size = get_init_ra_size(req_count, max_pages)
        file.ra_async = (file.ra_size - req_count if file.ra_size > req_count
                         else file.ra_size >> 1)
        file.ra_order = 0
        page_cache_ra_order(inode, file)
        return
    do_page_cache_ra(inode, index, req_count, 0)


def read_around(inode: Inode, file: OpenFile, index: int, ra_pages: int) -> None:
    """The mmap read-around of ``do_sync_mmap_readahead``: ``ra_pages`` from ``ra_pages / 2``
    before ``index``, PG_readahead at 3/4, order-0 folios."""
    file.ra_start = max(0, index - ra_pages // 2)
    file.ra_size = ra_pages
    file.ra_async = ra_pages // 4
    file.ra_order = 0
    page_cache_ra_order(inode, file)


def page_cache_async_ra(inode: Inode, file: OpenFile, index: int, req_count: int,
                        max_pages: int) -> None:
    """``page_cache_async_ra`` for a fault at ``index`` on the folio carrying PG_readahead: the
    mark is cleared; at the expected index the window moves past the current one, else it is
    rebuilt from the cached run after ``index``; the folio order grows by 2."""
    head, nr = inode.folio_of(index)
    inode.ra_marks.discard(head)
    expected = (file.ra_start + file.ra_size - file.ra_async) & ~(nr - 1)
    if index == expected:
        file.ra_start += file.ra_size
        file.ra_size = max(file.ra_size, get_next_ra_size(file.ra_size, max_pages))
        file.ra_async = file.ra_size
    else:
        start = page_cache_next_miss(inode, index + 1, max_pages)
        if not start or start - index > max_pages:
            return
        file.ra_start = start
        file.ra_size = get_next_ra_size(start - index + req_count, max_pages)
        file.ra_async = file.ra_size
    file.ra_order += 2
    page_cache_ra_order(inode, file)


def page_cache_next_miss(inode: Inode, index: int, max_scan: int) -> int:
    """``page_cache_next_miss``: the first uncached index of [index, index + max_scan), else
    ``index + max_scan``."""
    for i in range(index, index + max_scan):
        if i not in inode.cache:
            return i
    return index + max_scan


__all__ = ["page_cache_async_ra", "page_cache_sync_ra", "read_around"]
