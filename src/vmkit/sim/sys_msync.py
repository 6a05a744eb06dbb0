"""msync(2): mm/msync.c ``SYSCALL_DEFINE3(msync)``.

Rules (kernel-rules.md §13, machine-facts.md §7):

* Checks in order: a flag outside MS_ASYNC|MS_INVALIDATE|MS_SYNC → EINVAL; ``start`` not
  page-aligned → EINVAL; MS_ASYNC with MS_SYNC → EINVAL; ``len`` rounded up, ``end < start`` →
  ENOMEM; ``len == 0`` → 0 (before any VMA lookup).
* The walk: no VMA at or after the current position → ENOMEM.  A hole before a VMA: with flags
  exactly MS_ASYNC the call returns ENOMEM at once, otherwise ENOMEM is remembered and the walk
  goes on.  MS_INVALIDATE on a VM_LOCKED VMA → EBUSY at once.  MS_SYNC on a VM_SHARED file VMA
  writes its dirty pages back (``vfs_fsync_range``); everything else has nothing to do.
* Result: the walk's error, otherwise the remembered ENOMEM.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vmkit.errors import os_error
from vmkit.flags import MS, PAGE_SIZE
from vmkit.sim.frames import ZERO_FRAME, pool
from vmkit.sim.mm import GUARD, PTE_ANON, PTE_WRITE
from vmkit.sim.sys_mmap import MASK64, page_align
from vmkit.sim.vmflags import VM_LOCKED, VM_SHARED

if TYPE_CHECKING:
    from vmkit.sim.fs import Inode
    from vmkit.sim.kernel import Kernel, Task

MS_ASYNC, MS_INVALIDATE, MS_SYNC = int(MS.MS_ASYNC), int(MS.MS_INVALIDATE), int(MS.MS_SYNC)


def sys_msync(task: Task, start: int, length: int, flags: int) -> None:
    """``SYSCALL_DEFINE3(msync)``: argument checks, then the VMA walk described in the module."""
    start, length = start & MASK64, length & MASK64
    flags &= 0xFFFFFFFF
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
        raise os_error(errno.EINVAL)
    if start & (PAGE_SIZE - 1):
        raise os_error(errno.EINVAL)
    if flags & MS_ASYNC and flags & MS_SYNC:
        raise os_error(errno.EINVAL)
    length = page_align(length)
    end = (start + length) & MASK64
    if end < start:
        raise os_error(errno.ENOMEM)
    if end == start:
        return
    mm = task.mm
    unmapped_error = 0
    vma = mm.find_vma(start)
    while True:
        if vma is None:
            raise os_error(errno.ENOMEM)
        if start < vma.start:
            if flags == MS_ASYNC:
                raise os_error(errno.ENOMEM)
            start = vma.start
            if start >= end:
                raise os_error(errno.ENOMEM)
            unmapped_error = errno.ENOMEM
        if flags & MS_INVALIDATE and vma.flags & VM_LOCKED:
            raise os_error(errno.EBUSY)
        file = vma.file
        first = vma.pgoff_at(start)
        last = vma.pgoff_at(min(end, vma.end) - 1)
        start = vma.end
        if flags & MS_SYNC and file is not None and vma.flags & VM_SHARED:
            vfs_fsync_range(task.kernel, file.inode, first, last)
        if start >= end:
            break
        vma = mm.find_vma(start)
    if unmapped_error:
        raise os_error(unmapped_error)


def vfs_fsync_range(kernel: Kernel, inode: Inode, first: int, last: int) -> None:
    """``vfs_fsync_range`` over page indexes ``first..last``: a disk file writes its dirty pages back
    (``filemap_write_and_wait_range``), and each written page becomes clean everywhere it is mapped
    (``folio_clear_dirty_for_io`` → ``folio_mkclean``: shared entries lose write permission, so the
    next store faults and dirties the page again).  tmpfs and shmem have nothing to write
    (``noop_fsync``)."""
    if not inode.mount.has_disk:
        return
    written = {i: inode.cache[i] for i in inode.dirty if first <= i <= last and i in inode.cache}
    inode.writeback(first, last)
    if not written:
        return
    frames = pool()
    cleaned = set(written.values())
    for frame in cleaned:
        frames.dirty[frame] = 0
    for task in kernel.tasks.values():
        mm = task.mm
        for vma in mm.file_vmas(inode):
            if not vma.flags & VM_SHARED:
                continue
            for vpn, pte in list(mm.present_pages(vma.start, vma.end)):
                if pte != GUARD and not pte & PTE_ANON and pte >> 2 != ZERO_FRAME and pte >> 2 in cleaned:
                    mm.pt[vpn] = pte & ~PTE_WRITE
