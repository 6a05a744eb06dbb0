"""mprotect: mm/mprotect.c ``do_mprotect_pkey`` and ``mprotect_fixup``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vmkit.errors import os_error
from vmkit.flags import PAGE_SIZE
from vmkit.sim import abi
from vmkit.sim.vma import Vma
from vmkit.sim.sys_mmap import MASK64, page_align, populate
from vmkit.sim.vmflags import (
    VM_ACCESS_FLAGS, VM_ACCOUNT, VM_GROWSDOWN, VM_HUGETLB, VM_LOCKED, VM_NORESERVE, VM_SEALED,
    VM_SHARED, VM_WRITE, calc_vm_prot_bits,
)

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

_GROWS = abi.PROT_GROWSDOWN | abi.PROT_GROWSUP
_VALID = abi.PROT_READ | abi.PROT_WRITE | abi.PROT_EXEC | abi.PROT_SEM


def sys_mprotect(task: Task, start: int, length: int, prot: int) -> None:
    """``do_mprotect_pkey``: checks in order, then each VMA of the range in turn; a hole stops the
    walk with ENOMEM after the VMAs before it were changed."""
    start, length = start & MASK64, length & MASK64
    prot = int(prot) & 0xFFFFFFFF  # a plain int: IntFlag arithmetic is slow
    grows = prot & _GROWS
    prot &= ~_GROWS
    if grows == _GROWS:
        raise os_error(errno.EINVAL)
    if start & (PAGE_SIZE - 1):
        raise os_error(errno.EINVAL)
    if not length:
        return
    end = start + page_align(length)
    if end <= start or end > MASK64:
        raise os_error(errno.ENOMEM)
    if prot & ~_VALID:
        raise os_error(errno.EINVAL)
    mm = task.mm
    vma = mm.vmas.find(start)
    if vma is None or vma.start >= end and not grows & abi.PROT_GROWSDOWN:
        raise os_error(errno.ENOMEM)
    if grows & abi.PROT_GROWSDOWN:
        if vma.start >= end:
            raise os_error(errno.ENOMEM)
        start = vma.start
        if not vma.flags & VM_GROWSDOWN:
            raise os_error(errno.EINVAL)
    else:
        if vma.start > start:
            raise os_error(errno.ENOMEM)
        if grows & abi.PROT_GROWSUP:
            raise os_error(errno.EINVAL)  # x86 has no VM_GROWSUP
    nstart = start
    tmp = vma.start
    while True:
        vma = mm.vmas.find(nstart)
        if vma is None or vma.start >= end:
            break
        if vma.start != tmp:
            raise os_error(errno.ENOMEM)
        newflags = calc_vm_prot_bits(prot) | (vma.flags & ~VM_ACCESS_FLAGS)
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            raise os_error(errno.EACCES)
        tmp = min(vma.end, end)
        # the walk goes on from the end of the VMA the fixup left (vma_iter_end): a merge with the
        # next VMA may already cover the rest of the range
        tmp = nstart = mprotect_fixup(task, vma, nstart, tmp, newflags).end
        if tmp >= end:
            break
    if tmp < end:
        raise os_error(errno.ENOMEM)


def mprotect_fixup(task: Task, vma: Vma, start: int, end: int, newflags: int) -> Vma:
    """``mprotect_fixup``: accounting of newly writable private memory, split/merge, counters.
    Returns the VMA now covering [start, end) (a merged one may reach further)."""
    mm = task.mm
    oldflags = vma.flags
    pages = (end - start) >> 12
    if oldflags & VM_SEALED:
        raise os_error(errno.EPERM)
    if newflags == oldflags:
        return vma
    if newflags & VM_WRITE:
        if not mm.may_expand_vm(newflags, pages) and mm.may_expand_vm(oldflags, pages):
            raise os_error(errno.ENOMEM)
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            if not task.kernel.vm_enough_memory(pages):
                raise os_error(errno.ENOMEM)
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.anonymous and vma.anon_vma is None:
        newflags &= ~VM_ACCOUNT
    vma = mm.vma_modify(vma, start, end, newflags)
    vma.flags = newflags
    mm.stat_account(oldflags, -pages)
    mm.stat_account(newflags, pages)
    if oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED) == VM_LOCKED and newflags & VM_WRITE:
        populate(task, start, end)
    return vma
