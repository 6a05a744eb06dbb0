"""mlock, mlock2, munlock, mlockall, munlockall: mm/mlock.c, over the address-space engine.

Kernel rules (kernel-rules.md §11):

* ``do_mlock``: ``can_do_mlock`` (RLIMIT_MEMLOCK != 0 or CAP_IPC_LOCK) else EPERM; the range is
  rounded to pages (an unaligned start is fine); ``locked_vm`` + the range over RLIMIT_MEMLOCK
  without CAP_IPC_LOCK, after subtracting the pages of the range already locked
  (``count_mm_mlocked_page_nr``), is ENOMEM; then ``apply_vma_lock_flags`` and ``__mm_populate``,
  whose EFAULT becomes ENOMEM and ENOMEM EAGAIN (``__mlock_posix_error_return``): a PROT_NONE VMA or
  a guard page leaves VM_LOCKED set and charged but fails the call with ENOMEM.
* ``apply_vma_lock_flags``: no VMA at start → ENOMEM; VMAs are changed one by one up to the first
  hole, which is ENOMEM after the earlier ones were changed.
* ``mlock_fixup``: VMAs failing ``vma_supports_mlock`` (VM_SPECIAL, VM_DROPPABLE, hugetlb, DAX, the
  gate VMA) and VMAs whose flags would not change are left alone and not counted; otherwise
  ``vma_modify_flags`` (merge or split) and ``locked_vm`` += pages that become locked, -= pages that
  become unlocked, nothing for relocking (no double counting).
* ``mlockall``: flags 0, unknown bits or MCL_ONFAULT alone → EINVAL, then ``can_do_mlock`` → EPERM,
  then MCL_CURRENT with ``total_vm`` over the limit without CAP_IPC_LOCK → ENOMEM.
  ``apply_mlockall_flags`` replaces ``def_flags``'s lock bits and relocks every VMA, ignoring
  per-VMA errors; MCL_CURRENT then populates everything, ignoring errors (``mm_populate``).
* ``munlockall`` = ``apply_mlockall_flags(0)``; munlock and munlockall never check can_do_mlock.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vmkit.errors import os_error
from vmkit.flags import PAGE_SIZE
from vmkit.sim.mm import lru_add_drain
from vmkit.sim.vma import Vma
from vmkit.sim.vmflags import (
    VM_LOCKED, VM_LOCKED_MASK, VM_LOCKONFAULT,
)

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

MASK64 = (1 << 64) - 1
MLOCK_ONFAULT = 0x01
MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4


def _page_range(start: int, length: int) -> tuple[int, int]:
    """``len = PAGE_ALIGN(len + offset_in_page(start)); start &= PAGE_MASK`` on unsigned longs."""
    start, length = start & MASK64, length & MASK64
    length = (length + (start & (PAGE_SIZE - 1)) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & MASK64
    return start & ~(PAGE_SIZE - 1), length


def mlock_fixup(task: Task, vma: Vma, start: int, end: int, newflags: int) -> Vma:
    """``mlock_fixup`` (mm/mlock.c): returns the VMA now covering [start, end) (a merged one may
    cover more), or ``vma`` itself when nothing changes.  ENOMEM from a split at the map-count limit
    propagates."""
    mm = task.mm
    oldflags = vma.flags
    if newflags == oldflags or not vma.supports_mlock:
        return vma
    vma = mm.vma_modify(vma, start, end, newflags)
    pages = (end - start) >> 12
    if not newflags & VM_LOCKED:
        mm.locked_vm -= pages
    elif not oldflags & VM_LOCKED:
        mm.locked_vm += pages
    vma.flags = newflags  # mlock_vma_pages_range: the flags, and the folios' mlock state
    if not newflags & oldflags & VM_LOCKED:
        lru_add_drain(mm.kernel)  # mlock_vma_pages_range drains the LRU batches (lazyfree too)
    return vma


def apply_vma_lock_flags(task: Task, start: int, length: int, flags: int) -> None:
    """``apply_vma_lock_flags`` (mm/mlock.c): each VMA of [start, start+len) gets ``flags`` as its
    lock bits; a hole stops the walk with ENOMEM after the VMAs before it were changed."""
    end = start + length
    if end > MASK64:
        raise os_error(errno.EINVAL)
    if end == start:
        return
    mm = task.mm
    vma = mm.vma_lookup(start)  # vma_iter_load: the VMA containing start
    if vma is None:
        raise os_error(errno.ENOMEM)
    nstart = start
    tmp = vma.start
    while True:
        vma = mm.find_vma(nstart)
        if vma is None or vma.start >= end:
            break
        if vma.start != tmp:
            raise os_error(errno.ENOMEM)
        newflags = (vma.flags & ~VM_LOCKED_MASK) | flags
        tmp = min(vma.end, end)
        vma = mlock_fixup(task, vma, nstart, tmp, newflags)
        tmp = vma.end  # vma_iter_end: the end of the VMA now covering the range
        nstart = tmp
        if nstart >= end:
            break
    if tmp < end:
        raise os_error(errno.ENOMEM)


def count_mm_mlocked_page_nr(task: Task, start: int, length: int) -> int:
    """``count_mm_mlocked_page_nr``: pages of [start, start+len) in VM_LOCKED VMAs (ONFAULT too)."""
    end = min(start + length, MASK64)
    count = 0
    for vma in task.mm.vmas.overlapping(start, end):
        if vma.flags & VM_LOCKED:
            count += min(end, vma.end) - max(start, vma.start)
    return count >> 12


def _posix_error(err: int) -> int:
    """``__mlock_posix_error_return``: GUP's EFAULT is ENOMEM, its ENOMEM EAGAIN."""
    return {errno.EFAULT: errno.ENOMEM, errno.ENOMEM: errno.EAGAIN}.get(err, err)


def do_mlock(task: Task, start: int, length: int, flags: int) -> None:
    """``do_mlock`` (mm/mlock.c): can_do_mlock, the RLIMIT_MEMLOCK test, lock, populate."""
    if not task.can_do_mlock():
        raise os_error(errno.EPERM)
    start, length = _page_range(start, length)
    lock_limit = task.rlimit_cur("RLIMIT_MEMLOCK") >> 12
    locked = (length >> 12) + task.mm.locked_vm
    ipc_lock = task.capable("CAP_IPC_LOCK")
    if locked > lock_limit and not ipc_lock:
        locked -= count_mm_mlocked_page_nr(task, start, length)
    if not (locked <= lock_limit or ipc_lock):
        raise os_error(errno.ENOMEM)
    apply_vma_lock_flags(task, start, length, flags)
    err = task.mm.populate(start, start + length, ignore_errors=False)
    if err:
        raise os_error(_posix_error(err))


def sys_mlock(task: Task, start: int, length: int) -> None:
    """mlock(2): ``do_mlock(start, len, VM_LOCKED)``."""
    do_mlock(task, start, length, VM_LOCKED)


def sys_mlock2(task: Task, start: int, length: int, flags: int) -> None:
    """mlock2(2): only MLOCK_ONFAULT is accepted (else EINVAL); it adds VM_LOCKONFAULT."""
    flags &= 0xFFFFFFFF
    if flags & ~MLOCK_ONFAULT:
        raise os_error(errno.EINVAL)
    vm_flags = VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0)
    do_mlock(task, start, length, vm_flags)


def sys_munlock(task: Task, start: int, length: int) -> None:
    """munlock(2): the same rounding, ``apply_vma_lock_flags(start, len, 0)``, no limit checks."""
    start, length = _page_range(start, length)
    apply_vma_lock_flags(task, start, length, 0)


def apply_mlockall_flags(task: Task, flags: int) -> None:
    """``apply_mlockall_flags`` (mm/mlock.c): def_flags' lock bits are replaced (MCL_FUTURE →
    VM_LOCKED [| VM_LOCKONFAULT]); with MCL_CURRENT (or for munlockall) every VMA's lock bits are
    set to the new ones, per-VMA errors ignored."""
    mm = task.mm
    mm.def_flags &= ~VM_LOCKED_MASK
    if flags & MCL_FUTURE:
        mm.def_flags |= VM_LOCKED
        if flags & MCL_ONFAULT:
            mm.def_flags |= VM_LOCKONFAULT
        if not flags & MCL_CURRENT:
            return
    to_add = 0
    if flags & MCL_CURRENT:
        to_add = VM_LOCKED | (VM_LOCKONFAULT if flags & MCL_ONFAULT else 0)
    addr = 0
    while True:
        vma = mm.find_vma(addr)
        if vma is None:
            break
        try:
            vma = mlock_fixup(task, vma, vma.start, vma.end, (vma.flags & ~VM_LOCKED_MASK) | to_add)
        except OSError:
            pass  # "Ignore errors, but prev needs fixing up."
        addr = vma.end


def sys_mlockall(task: Task, flags: int) -> None:
    """mlockall(2): EINVAL, EPERM, ENOMEM in that order; MCL_CURRENT populates (errors ignored)."""
    flags &= 0xFFFFFFFF
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        raise os_error(errno.EINVAL)
    if not task.can_do_mlock():
        raise os_error(errno.EPERM)
    lock_limit = task.rlimit_cur("RLIMIT_MEMLOCK") >> 12
    if flags & MCL_CURRENT and task.mm.total_vm > lock_limit and not task.capable("CAP_IPC_LOCK"):
        raise os_error(errno.ENOMEM)
    apply_mlockall_flags(task, flags)
    if flags & MCL_CURRENT:
        from vmkit.flags import TASK_SIZE

        task.mm.populate(0, TASK_SIZE, ignore_errors=True)


def sys_munlockall(task: Task) -> None:
    """munlockall(2): ``apply_mlockall_flags(0)``."""
    apply_mlockall_flags(task, 0)


__all__ = ["apply_vma_lock_flags", "do_mlock", "mlock_fixup", "sys_mlock", "sys_mlock2",
           "sys_mlockall", "sys_munlock", "sys_munlockall"]
