"""mincore(2): mm/mincore.c ``SYSCALL_DEFINE3(mincore)``, ``do_mincore``, ``mincore_pte_range``,
``mincore_page``, ``can_do_mincore``.

Rules (kernel-rules.md §12, machine-facts.md §8):

* ``start`` not page-aligned → EINVAL; ``[start, start + len)`` not a valid user range
  (``access_ok``: past ``USER_PTR_MAX`` or wrapping) → ENOMEM; ``len == 0`` → an empty vector.
* One byte per page (``len`` rounded up), filled VMA by VMA: the first page with no VMA ends the call
  with ENOMEM (the bytes before it were already copied out; the API returns nothing then).
* A present PTE is 1 (the shared zero page included); no PTE, or a PTE marker (a guard page:
  ``pte_none_mostly``), in a file VMA reports the page cache (``mincore_page``), in an anonymous
  VMA 0.
* ``can_do_mincore``: a file VMA whose file the caller could not open for writing (not the owner
  nor CAP_FOWNER, no write permission) reports every page as 1; a VMA with neither a file nor
  anonymous memory (a special mapping) likewise.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vmkit.errors import os_error
from vmkit.flags import PAGE_SIZE, TASK_SIZE
from vmkit.sim.fs import FileSystem
from vmkit.sim.mm import GUARD
from vmkit.sim.sys_mmap import MASK64
from vmkit.sim.vma import Vma

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

#: ``USER_PTR_MAX`` on x86-64 without LAM: ``TASK_SIZE_MAX`` (arch/x86/kernel/cpu/common.c).
USER_PTR_MAX = TASK_SIZE


def access_ok(addr: int, size: int) -> bool:
    """x86-64 ``__access_ok``: ``addr + size`` neither wraps nor passes ``USER_PTR_MAX``."""
    total = addr + size
    return total <= MASK64 and total <= USER_PTR_MAX


def can_do_mincore(task: Task, vma: Vma) -> bool:
    """``can_do_mincore``: anonymous VMAs always; file VMAs only when the caller owns the file (or has
    CAP_FOWNER) or may write it (``file_permission(MAY_WRITE)``, CAP_DAC_OVERRIDE included)."""
    if vma.anonymous:
        return True
    if vma.file is None:
        return False
    inode = vma.file.inode
    if inode.uid == task.cred.euid or task.capable("CAP_FOWNER"):
        return True
    return task.capable("CAP_DAC_OVERRIDE") or FileSystem._may(inode, task.cred.euid, write=True)


def mincore_page(vma: Vma, addr: int) -> int:
    """``__mincore_unmapped_range`` for one page: the page-cache state of a file page (1 if cached;
    never past EOF, where nothing is cached), 0 for anonymous memory."""
    if vma.file is None:
        return 0
    return int(vma.file.inode.find_page(vma.pgoff_at(addr)) is not None)


def do_mincore(task: Task, addr: int, pages: int, vec: bytearray) -> int:
    """``do_mincore``: fills ``vec`` for the VMA containing ``addr`` (at most ``pages`` pages) and
    returns how many pages it covered; ENOMEM if no VMA contains ``addr``."""
    mm = task.mm
    vma = mm.vma_lookup(addr)
    if vma is None:
        raise os_error(errno.ENOMEM)
    end = min(vma.end, addr + pages * PAGE_SIZE)
    count = (end - addr) >> 12
    if not can_do_mincore(task, vma):
        vec += b"\x01" * count
        return count
    pt = mm.pt
    for vpn in range(addr >> 12, end >> 12):
        pte = pt.get(vpn)
        if pte is None or pte == GUARD:
            vec.append(mincore_page(vma, vpn << 12))
        else:
            vec.append(1)
    return count


def sys_mincore(task: Task, start: int, length: int) -> bytes:
    """``SYSCALL_DEFINE3(mincore)``: checks in order, then ``do_mincore`` VMA by VMA."""
    start, length = start & MASK64, length & MASK64
    if start & (PAGE_SIZE - 1):
        raise os_error(errno.EINVAL)
    if not access_ok(start, length):
        raise os_error(errno.ENOMEM)
    pages = (length >> 12) + (1 if length & (PAGE_SIZE - 1) else 0)
    vec = bytearray()
    while pages:
        done = do_mincore(task, start, pages, vec)
        pages -= done
        start += done << 12
    return bytes(vec)
