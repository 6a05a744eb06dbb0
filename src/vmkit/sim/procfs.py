"""``/proc/<pid>/maps``, ``smaps`` and ``status`` of a model process, in the kernel's format.

Sources: fs/proc/task_mmu.c ``show_map_vma`` (the 73-column padding before the name),
``show_smap``/``__show_smap``, ``task_mem``; the naming of ``[heap]`` (``vma_is_initial_heap``) and
``[stack]`` (``vma_is_initial_stack``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmkit.sim.frames import ZERO_FRAME, pool
from vmkit.sim.mm import PTE_ANON, MemoryManager
from vmkit.sim.vma import Vma
from vmkit.sim.vmflags import (
    VM_HUGEPAGE, VM_LOCKED, VM_NOHUGEPAGE, maps_perms, mnemonics,
)

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

VSYSCALL = "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"


def vma_name(mm: MemoryManager, vma: Vma) -> str:
    """The name column: the file path, a special mapping's name, [heap], [stack] or nothing."""
    if vma.file is not None:
        return vma.file.inode.maps_name()
    if vma.special is not None:
        return vma.special
    if vma.start < mm.brk and vma.end > mm.start_brk:
        return "[heap]"
    if mm.start_stack and vma.start <= mm.start_stack <= vma.end:  # vma_is_initial_stack
        return "[stack]"
    return ""


def maps_line(mm: MemoryManager, vma: Vma) -> str:
    """One line of maps (``show_map_vma``)."""
    if vma.file is not None:
        inode = vma.file.inode
        dev, ino, pgoff = inode.maps_dev, inode.ino, vma.pgoff
    else:
        dev, ino, pgoff = "00:00", 0, 0
    head = f"{vma.start:08x}-{vma.end:08x} {maps_perms(vma.flags)} {pgoff << 12:08x} {dev} {ino} "
    name = vma_name(mm, vma)
    if name:
        head = head.ljust(73) + name
    return head + "\n"


def maps(task: Task) -> str:
    mm = task.mm
    text = "".join(maps_line(mm, vma) for vma in mm.vmas)
    return text + (VSYSCALL if mm.vsyscall else "")


def _smaps_block(mm: MemoryManager, vma: Vma) -> str:
    frames = pool()
    rss = pss = pss_dirty = shared_clean = shared_dirty = private_clean = private_dirty = 0
    anonymous = 0
    inode = vma.file.inode if vma.file is not None else None
    for vpn, pte in mm.present_pages(vma.start, vma.end):
        frame = pte >> 2
        if frame == ZERO_FRAME:
            continue
        rss += 4
        mapcount = max(frames.mapcount[frame], 1)
        # smaps_page_accumulate: the entry's dirty bit or folio_test_dirty (a page written with
        # pwrite, or a sibling written in the same large folio, is dirty in the page cache)
        dirty = bool(frames.dirty[frame]) or (
            inode is not None and not pte & PTE_ANON and inode.folio_dirty(vma.pgoff_at(vpn << 12)))
        share = 4096 // mapcount
        pss += share
        if dirty:
            pss_dirty += share
        if pte & PTE_ANON:
            anonymous += 4
        if mapcount > 1:
            if dirty:
                shared_dirty += 4
            else:
                shared_clean += 4
        elif dirty:
            private_dirty += 4
        else:
            private_clean += 4
    size = (vma.end - vma.start) >> 10
    locked = (pss // 1024) if vma.flags & VM_LOCKED else 0
    thp_eligible = int(bool(vma.flags & VM_HUGEPAGE) and vma.anonymous and not vma.flags & VM_NOHUGEPAGE
                       and size >= 2048)
    rows = [
        ("Size", size), ("KernelPageSize", 4), ("MMUPageSize", 4), ("Rss", rss),
        ("Pss", pss // 1024), ("Pss_Dirty", pss_dirty // 1024), ("Shared_Clean", shared_clean),
        ("Shared_Dirty", shared_dirty), ("Private_Clean", private_clean),
        ("Private_Dirty", private_dirty), ("Referenced", rss), ("Anonymous", anonymous),
        ("KSM", 0), ("LazyFree", mm.lazyfree_pages(vma) * 4),
        ("AnonHugePages", mm.anon_huge_pages(vma) * 4), ("ShmemPmdMapped", 0),
        ("FilePmdMapped", 0), ("Shared_Hugetlb", 0), ("Private_Hugetlb", 0), ("Swap", 0),
        ("SwapPss", 0), ("Locked", locked),
    ]
    body = "".join(f"{name + ':':<16}{value:>8} kB\n" for name, value in rows)
    return maps_line(mm, vma) + body + f"THPeligible:    {thp_eligible:>8}\n" + f"VmFlags: {mnemonics(vma.flags)}\n"


def smaps(task: Task) -> str:
    mm = task.mm
    text = "".join(_smaps_block(mm, vma) for vma in mm.vmas)
    if mm.vsyscall:
        text += VSYSCALL + "".join(
            f"{name + ':':<16}{value:>8} kB\n" for name, value in (
                ("Size", 4), ("KernelPageSize", 4), ("MMUPageSize", 4), ("Rss", 0), ("Pss", 0),
                ("Pss_Dirty", 0), ("Shared_Clean", 0), ("Shared_Dirty", 0), ("Private_Clean", 0),
                ("Private_Dirty", 0), ("Referenced", 0), ("Anonymous", 0), ("KSM", 0),
                ("LazyFree", 0), ("AnonHugePages", 0), ("ShmemPmdMapped", 0), ("FilePmdMapped", 0),
                ("Shared_Hugetlb", 0), ("Private_Hugetlb", 0), ("Swap", 0), ("SwapPss", 0),
                ("Locked", 0),
            )
        ) + f"THPeligible:    {0:>8}\nVmFlags: ex \n"
    return text


def status(task: Task) -> dict[str, str]:
    """The memory fields of ``/proc/<pid>/status`` (``task_mem``) plus identity fields."""
    mm = task.mm
    rss_anon = rss_file = rss_shmem = 0
    for vma in mm.vmas:
        for _, pte in mm.present_pages(vma.start, vma.end):
            if pte >> 2 == ZERO_FRAME:
                continue
            if pte & PTE_ANON:
                rss_anon += 4
            elif vma.file is not None and vma.file.inode.is_shmem:
                rss_shmem += 4
            else:
                rss_file += 4
    # task_mem: text = PAGE_ALIGN(end_code) - (start_code & PAGE_MASK), at most exec_vm; the rest
    # of the executable mappings is VmLib
    text = ((mm.end_code + 4095) & ~4095) - (mm.start_code & ~4095)
    exec_kb = min(text & ((1 << 64) - 1), mm.exec_vm << 12) >> 10
    lib = (mm.exec_vm << 2) - exec_kb
    kb = lambda n: f"{n} kB"  # noqa: E731
    cred = task.cred
    return {
        "Name": "vmkit-sim",
        "Pid": str(task.pid),
        "Uid": f"{cred.ruid}\t{cred.euid}\t{cred.suid}\t{cred.euid}",
        "Gid": f"{cred.rgid}\t{cred.egid}\t{cred.sgid}\t{cred.egid}",
        "VmSize": kb(mm.total_vm << 2),
        "VmLck": kb(mm.locked_vm << 2),
        "VmPin": kb(0),
        "VmRSS": kb(rss_anon + rss_file + rss_shmem),
        "RssAnon": kb(rss_anon),
        "RssFile": kb(rss_file),
        "RssShmem": kb(rss_shmem),
        "VmData": kb(mm.data_vm << 2),
        "VmStk": kb(mm.stack_vm << 2),
        "VmExe": kb(exec_kb),
        "VmLib": kb(lib),
        "VmSwap": kb(0),
    }


__all__ = ["maps", "smaps", "status"]
