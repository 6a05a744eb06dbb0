"""mmap, munmap and brk: argument checks in the kernel's order, over the address-space engine.

Sources: arch/x86/kernel/sys_x86_64.c ``sys_mmap``; mm/mmap.c ``ksys_mmap_pgoff``, ``do_mmap``,
``__mmap_region`` (6.12 layout, 6.18 behaviour), ``__vm_munmap``, ``brk``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vmkit.errors import os_error
from vmkit.flags import PAGE_SIZE, TASK_SIZE
from vmkit.sim import abi
from vmkit.sim.fs import Inode, OpenFile
from vmkit.sim.vma import Vma
from vmkit.sim.vmflags import (
    VM_ACCOUNT, VM_DATA_DEFAULT_FLAGS, VM_DONTDUMP, VM_DONTEXPAND, VM_DROPPABLE, VM_EXEC, VM_GROWSDOWN,
    VM_HUGETLB, VM_LOCKED, VM_LOCKED_MASK, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE,
    VM_NORESERVE, VM_SHARED, VM_WIPEONFORK, VM_WRITE,
    calc_vm_flag_bits, calc_vm_prot_bits,
)

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

MASK64 = (1 << 64) - 1
#: ``LEGACY_MAP_MASK`` (include/linux/mman.h): the flags MAP_SHARED_VALIDATE accepts.
LEGACY_MAP_MASK = (
    abi.MAP_SHARED | abi.MAP_PRIVATE | abi.MAP_FIXED | abi.MAP_ANONYMOUS | abi.MAP_DENYWRITE
    | abi.MAP_EXECUTABLE | abi.MAP_UNINITIALIZED | abi.MAP_GROWSDOWN | abi.MAP_LOCKED
    | abi.MAP_NORESERVE | abi.MAP_POPULATE | abi.MAP_NONBLOCK | abi.MAP_STACK | abi.MAP_HUGETLB
    | abi.MAP_32BIT | abi.MAP_ABOVE4G | (0x3F << 26)
)
#: Huge page sizes this machine has (``hstate_sizelog``): the default (0), 2 MiB and 1 GiB.
HUGE_SIZES = {0: 2 << 20, 21: 2 << 20, 30: 1 << 30}


def page_align(n: int) -> int:
    """``PAGE_ALIGN`` on an unsigned long: wraps to 0 past 2**64."""
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & MASK64


def sys_mmap(task: Task, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
    """mmap(2) on x86-64: ``sys_mmap`` → ``ksys_mmap_pgoff`` → ``do_mmap``."""
    addr, length, offset = addr & MASK64, length & MASK64, offset & MASK64
    prot = int(prot) & 0xFFFFFFFF  # plain ints: IntFlag arithmetic would make every VMA flag slow
    # flags is an unsigned long all the way to do_mmap: bits above 31 stay (MAP_SHARED_VALIDATE
    # refuses them with EOPNOTSUPP; MAP_SHARED and MAP_PRIVATE ignore them)
    flags = int(flags) & MASK64
    if offset & (PAGE_SIZE - 1):
        raise os_error(errno.EINVAL)
    pgoff = offset >> 12
    file: OpenFile | None = None
    hugetlb = False
    if not flags & abi.MAP_ANONYMOUS:
        file = task.file(fd if fd < (1 << 31) else fd - (1 << 32))
        huge_size = file.inode.huge_size
        if huge_size:  # is_file_hugepages: the length in whole huge pages (MAP_HUGETLB is fine)
            length = (length + huge_size - 1) & ~(huge_size - 1) & MASK64
            hugetlb = True
        elif flags & abi.MAP_HUGETLB:
            raise os_error(errno.EINVAL)
    elif flags & abi.MAP_HUGETLB:
        size = HUGE_SIZES.get((flags >> 26) & 0x3F)
        if size is None:
            raise os_error(errno.EINVAL)
        length = (length + size - 1) & ~(size - 1) & MASK64
        hugetlb = True
    return do_mmap(task, file, addr, length, prot, flags, pgoff, hugetlb)


def do_mmap(task: Task, file: OpenFile | None, addr: int, length: int, prot: int, flags: int,
            pgoff: int, hugetlb: bool = False) -> int:
    """``do_mmap`` (mm/mmap.c), checks in its order."""
    mm = task.mm
    kernel = task.kernel
    if not length:
        raise os_error(errno.EINVAL)
    if flags & abi.MAP_FIXED_NOREPLACE:
        flags |= abi.MAP_FIXED
    if not flags & abi.MAP_FIXED:
        addr &= ~(PAGE_SIZE - 1)
        if addr and addr < kernel.min_addr:  # round_hint_to_min
            addr = page_align(kernel.min_addr)
    length = page_align(length)
    if not length:
        raise os_error(errno.ENOMEM)
    if pgoff + (length >> 12) > MASK64:
        raise os_error(errno.EOVERFLOW)
    if mm.map_count > kernel.max_map_count:
        raise os_error(errno.ENOMEM)
    vm_flags = (calc_vm_prot_bits(prot) | calc_vm_flag_bits(flags) | mm.def_flags
                | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC)
    addr = mm.get_unmapped_area(file, addr, length, pgoff if file is not None else 0, flags,
                                huge_size=hugetlb_size(file, flags) if hugetlb else 0)
    if flags & abi.MAP_FIXED_NOREPLACE and mm.vmas.overlapping(addr, addr + length):
        raise os_error(errno.EEXIST)
    if flags & abi.MAP_LOCKED and not task.can_do_mlock():
        raise os_error(errno.EPERM)
    if vm_flags & VM_LOCKED and not task.mlock_ok(mm, length >> 12):
        raise os_error(errno.EAGAIN)
    map_type = flags & abi.MAP_TYPE
    if file is not None:
        inode = file.inode
        if not file_mmap_ok(pgoff, length, file_mmap_size_max(inode)):
            raise os_error(errno.EOVERFLOW)
        if map_type in (abi.MAP_SHARED, abi.MAP_SHARED_VALIDATE):
            flags = shared_flags(map_type, flags)
            if prot & 0x2 and not file.writable:
                raise os_error(errno.EACCES)
            vm_flags |= VM_SHARED | VM_MAYSHARE
            if not file.writable:
                vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
        elif map_type != abi.MAP_PRIVATE:
            raise os_error(errno.EINVAL)
        if not file.readable:
            raise os_error(errno.EACCES)
        if inode.mount.noexec:  # path_noexec: no VM_EXEC, and none later through mprotect
            if vm_flags & VM_EXEC:
                raise os_error(errno.EPERM)
            vm_flags &= ~VM_MAYEXEC
        if inode.kind in ("dir", "pidfd", "null", "pipe"):
            raise os_error(errno.ENODEV)
        if vm_flags & VM_GROWSDOWN:
            raise os_error(errno.EINVAL)
    elif hugetlb:
        # the hugetlbfs file hugetlb_file_setup made: the file rules apply, the offset is the pgoff
        if not file_mmap_ok(pgoff, length):
            raise os_error(errno.EOVERFLOW)
        if map_type in (abi.MAP_SHARED, abi.MAP_SHARED_VALIDATE):
            flags = shared_flags(map_type, flags)
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif map_type != abi.MAP_PRIVATE:
            raise os_error(errno.EINVAL)
        if vm_flags & VM_GROWSDOWN:
            raise os_error(errno.EINVAL)
    else:
        if map_type == abi.MAP_SHARED:
            if vm_flags & VM_GROWSDOWN:
                raise os_error(errno.EINVAL)
            pgoff = 0
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif map_type == abi.MAP_DROPPABLE:
            if flags & (abi.MAP_LOCKED | abi.MAP_HUGETLB) or vm_flags & VM_GROWSDOWN:
                raise os_error(errno.EINVAL)
            vm_flags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP
            pgoff = addr >> 12
        elif map_type == abi.MAP_PRIVATE:
            pgoff = addr >> 12
        else:
            raise os_error(errno.EINVAL)
    if flags & abi.MAP_NORESERVE and kernel.overcommit_memory != 2:
        vm_flags |= VM_NORESERVE
    if hugetlb:
        vm_flags |= VM_NORESERVE if flags & abi.MAP_NORESERVE else 0
    addr = mmap_region(task, file, addr, length, vm_flags, pgoff, flags, hugetlb)
    if vm_flags & VM_LOCKED or flags & (abi.MAP_POPULATE | abi.MAP_NONBLOCK) == abi.MAP_POPULATE:
        populate(task, addr, addr + length)
    return addr


def hugetlb_size(file: OpenFile | None, flags: int) -> int:
    """The huge page size of a hugetlb mapping: the file's hstate, or for anonymous MAP_HUGETLB
    the one encoded in the flags (``hstate_sizelog``)."""
    if file is not None and file.inode.huge_size:
        return file.inode.huge_size
    return HUGE_SIZES[(flags >> 26) & 0x3F]


def shared_flags(map_type: int, flags: int) -> int:
    """MAP_SHARED silently drops flags outside LEGACY_MAP_MASK; MAP_SHARED_VALIDATE refuses them
    with EOPNOTSUPP (``do_mmap``)."""
    if map_type == abi.MAP_SHARED:
        return flags & LEGACY_MAP_MASK
    if flags & ~LEGACY_MAP_MASK:
        raise os_error(errno.EOPNOTSUPP)
    return flags


def file_mmap_size_max(inode: Inode) -> int:
    """``file_mmap_size_max`` (mm/mmap.c): MAX_LFS_FILESIZE for regular files (pidfs inodes are
    S_IFREG on 6.18), ULONG_MAX for the rest the model has (directories, /dev/zero, /dev/null)."""
    return (1 << 63) - 1 if inode.kind in ("reg", "pidfd") else MASK64


def file_mmap_ok(pgoff: int, length: int, maxsize: int = (1 << 63) - 1) -> bool:
    """``file_mmap_ok``: the range must end within ``maxsize`` (MAX_LFS_FILESIZE for regular files)."""
    if length > maxsize:
        return False
    return pgoff <= (maxsize - length) >> 12


def accountable(file: OpenFile | None, vm_flags: int, hugetlb: bool) -> bool:
    """``accountable_mapping``: private writable memory without MAP_NORESERVE is charged."""
    if hugetlb:
        return False
    return vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE) == VM_WRITE


def mmap_region(task: Task, file: OpenFile | None, addr: int, length: int, vm_flags: int,
                pgoff: int, flags: int, hugetlb: bool) -> int:
    """``__mmap_region``: clear the target, check limits and commit, merge or insert."""
    mm = task.mm
    kernel = task.kernel
    end = addr + length
    pages = length >> 12
    old = mm.vmas.overlapping(addr, end)
    if old:
        # vms_gather_munmap_vmas: the old VMAs are split at the range's ends before the checks
        # below; one of those failing (vms_abort_munmap_vmas) leaves them split
        mm.split_range_ends(addr, end)
        old = mm.vmas.overlapping(addr, end)
    old_pages = sum((min(v.end, end) - max(v.start, addr)) >> 12 for v in old)
    if not mm.may_expand_vm(vm_flags, pages - old_pages):
        raise os_error(errno.ENOMEM)
    if accountable(file, vm_flags, hugetlb):
        charged = pages - sum((min(v.end, end) - max(v.start, addr)) >> 12 for v in old
                              if v.flags & VM_ACCOUNT)
        if charged and not kernel.vm_enough_memory(charged):
            raise os_error(errno.ENOMEM)
        vm_flags |= VM_ACCOUNT
    if file is None and vm_flags & VM_SHARED and not vm_flags & VM_NORESERVE and not hugetlb:
        if not kernel.vm_enough_memory(pages):  # shmem_acct_size of shmem_zero_setup
            raise os_error(errno.ENOMEM)
    if hugetlb and kernel.hugetlb_pages:
        raise NotImplementedError("hugetlb mappings backed by a non-empty pool are not modelled")
    if old:
        mm.munmap_range(addr, end)
    # The file's ->mmap hook runs after the old mappings were cleared: when it refuses, a MAP_FIXED
    # caller has lost them (vms_abort_munmap_vmas cannot restore cleared page tables; seen on 6.18
    # for hugetlbfs_file_mmap and for ext4_file_mmap's refusal of VM_SYNC without DAX)
    if file is not None and vm_flags & 0x00800000 and file.inode.mount.refuses_map_sync:
        raise os_error(errno.EOPNOTSUPP)
    if hugetlb and pgoff & ((hugetlb_size(file, flags) >> 12) - 1):
        raise os_error(errno.EINVAL)  # the offset must be huge-page aligned
    if hugetlb and not vm_flags & VM_NORESERVE and kernel.hugetlb_pages * (2 << 20) < length:
        raise os_error(errno.ENOMEM)  # hugetlb_reserve_pages: the pool is empty
    if hugetlb and file is not None and hugetlb_size(file, flags) != 2 << 20:
        raise NotImplementedError("mappings of a 1 GiB hugetlbfs file are not modelled")
    vma_file = file
    anonymous = file is None
    if file is not None and file.inode.kind == "zero":
        if vm_flags & VM_SHARED:
            vma_file = OpenFile(kernel.fs.shmem_zero(length, task.cred.euid), 2)
        else:
            anonymous = True  # private /dev/zero: anonymous memory; the file offset stays the pgoff
    merged = None
    if not hugetlb and not (file is None and vm_flags & VM_SHARED):
        merged = mm.merge_new_range(addr, end, vm_flags, vma_file, pgoff)
    if merged is None:
        if file is None and vm_flags & VM_SHARED:
            vma_file = OpenFile(kernel.fs.shmem_zero(length, task.cred.euid), 2)
            anonymous = False
        if hugetlb:
            vm_flags |= VM_HUGETLB | VM_DONTEXPAND
            if file is None:
                vma_file = OpenFile(kernel.fs.hugetlb_file(length, task.cred.euid), 2)
            elif vm_flags & VM_WRITE and file.inode.size < length + (pgoff << 12):
                file.inode.size = length + (pgoff << 12)  # hugetlbfs_file_mmap extends i_size
            anonymous = False
        vma = Vma(addr, end, pgoff, vm_flags, vma_file, anonymous=anonymous)
        mm.insert_vma(vma)
    else:
        vma = merged
    mm.stat_account(vm_flags, pages)
    if vm_flags & VM_LOCKED:
        if vma.supports_mlock:
            mm.locked_vm += pages
        else:  # droppable, hugetlb, special: never locked, even under MCL_FUTURE
            vma.flags &= ~VM_LOCKED_MASK
    return addr


def populate(task: Task, start: int, end: int) -> None:
    """``mm_populate``: fault the range in, errors ignored (``__mm_populate`` in the engine)."""
    task.mm.populate(start, end, ignore_errors=True)


def sys_munmap(task: Task, addr: int, length: int) -> None:
    """``__vm_munmap`` / ``do_vmi_munmap``: EINVAL for bad ranges, holes ignored."""
    addr, length = addr & MASK64, length & MASK64
    if addr & (PAGE_SIZE - 1) or addr > TASK_SIZE or length > TASK_SIZE - addr:
        raise os_error(errno.EINVAL)
    length = page_align(length)
    if not length:
        raise os_error(errno.EINVAL)
    end = addr + length
    for vma in task.mm.vmas.overlapping(addr, end):
        if vma.flags & VM_HUGETLB and (addr % (2 << 20) or end % (2 << 20)):
            raise os_error(errno.EINVAL)
    task.mm.munmap_range(addr, end)


def sys_brk(task: Task, brk: int) -> int:
    """``brk`` (mm/mmap.c): moves the break, returning the new one, or the old one if refused."""
    mm = task.mm
    brk &= MASK64
    origbrk = mm.brk
    if brk < mm.start_brk:
        return origbrk
    data_limit = task.rlimit_cur("RLIMIT_DATA")
    if data_limit != MASK64 and brk - mm.start_brk > data_limit:  # check_data_rlimit (no data segment)
        return origbrk
    newbrk, oldbrk = page_align(brk), page_align(mm.brk)
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:
        heap = mm.vmas.find(newbrk)
        if heap is None or heap.start >= oldbrk:
            return origbrk  # the range is not the heap's
        mm.brk = brk
        mm.munmap_range(newbrk, oldbrk)
        return brk
    try:  # check_brk_limits
        mm.get_unmapped_area(None, oldbrk, (newbrk - oldbrk) & MASK64, 0, abi.MAP_FIXED)
    except OSError:
        return origbrk
    if mm.def_flags & VM_LOCKED and not task.mlock_ok(mm, (newbrk - oldbrk) >> 12):
        return origbrk
    nxt = mm.find_vma(oldbrk)
    if nxt is not None and newbrk + PAGE_SIZE > mm.vm_start_gap(nxt):
        return origbrk
    if not do_brk_flags(task, oldbrk, newbrk - oldbrk):
        return origbrk
    mm.brk = brk
    if mm.def_flags & VM_LOCKED:
        populate(task, oldbrk, newbrk)
    return brk


def do_brk_flags(task: Task, addr: int, length: int, extra_flags: int = 0) -> bool:
    """``do_brk_flags``: extend the heap VMA (one at or above start_brk) or make a new one; False
    when a limit refuses.  ``extra_flags`` is ``vm_brk_flags``' VM_EXEC (an executable ELF bss)."""
    mm = task.mm
    flags = VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | mm.def_flags | extra_flags
    pages = length >> 12
    if not mm.may_expand_vm(flags, pages):
        return False
    if mm.map_count > task.kernel.max_map_count:
        return False
    if not task.kernel.vm_enough_memory(pages):
        return False
    # brk's vma_prev_limit(start_brk): only a VMA inside the heap area can be extended, and only
    # as a merge of a new range with VMG_FLAG_JUST_EXPAND (never with the next VMA).
    prev = mm.vmas.below(addr)
    if (prev is None or prev.start < mm.start_brk or prev.end != addr
            or mm.merge_new_range(addr, addr + length, flags, None, addr >> 12,
                                  just_expand=True) is None):
        mm.insert_vma(Vma(addr, addr + length, addr >> 12, flags))
    mm.stat_account(flags, pages)
    if flags & VM_LOCKED:
        mm.locked_vm += pages
    return True


__all__ = ["do_mmap", "mmap_region", "populate", "sys_brk", "sys_mmap", "sys_munmap"]
