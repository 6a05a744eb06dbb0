"""VMA flags (``include/linux/mm.h`` VM_*), their smaps mnemonics, and the mmap-to-VMA translations.

``calc_vm_prot_bits`` / ``calc_vm_flag_bits`` are the kernel's (``include/linux/mman.h``); the
mnemonics are ``fs/proc/task_mmu.c:show_smap_vma_flags``, printed in bit order.
"""

from __future__ import annotations

from vmkit.sim import abi

VM_NONE = 0
VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_GROWSDOWN = 0x00000100
VM_UFFD_MISSING = 0x00000200
VM_PFNMAP = 0x00000400
#: Set on the whole VMA by MADV_GUARD_INSTALL (6.18 "gu"); kept across splits and merges.
VM_MAYBE_GUARD = 0x00000800
VM_UFFD_WP = 0x00001000
VM_LOCKED = 0x00002000
VM_IO = 0x00004000
VM_SEQ_READ = 0x00008000
VM_RAND_READ = 0x00010000
VM_DONTCOPY = 0x00020000
VM_DONTEXPAND = 0x00040000
VM_LOCKONFAULT = 0x00080000
VM_ACCOUNT = 0x00100000
VM_NORESERVE = 0x00200000
VM_HUGETLB = 0x00400000
VM_SYNC = 0x00800000
VM_ARCH_1 = 0x01000000
VM_WIPEONFORK = 0x02000000
VM_DONTDUMP = 0x04000000
VM_SOFTDIRTY = 0  # CONFIG_MEM_SOFT_DIRTY is off on our machines
VM_MIXEDMAP = 0x10000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 1 << 31
VM_DROPPABLE = 1 << 40
VM_SEALED = 1 << 63

VM_STACK = VM_GROWSDOWN
VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT
#: ``VM_DATA_DEFAULT_FLAGS`` (x86-64, no READ_IMPLIES_EXEC): brk and the ELF bss.
VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
#: ``VM_STACK_DEFAULT_FLAGS`` with ``VM_STACK_INCOMPLETE_SETUP`` cleared, as the stack ends up.
VM_STACK_FLAGS = VM_STACK | VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT
#: Flags that a merge ignores (``is_mergeable_vma``): soft-dirty, and the sticky guard marker.
VM_IGNORE_MERGE = VM_SOFTDIRTY | VM_MAYBE_GUARD

_MNEMONICS = {
    VM_READ: "rd", VM_WRITE: "wr", VM_EXEC: "ex", VM_SHARED: "sh", VM_MAYREAD: "mr",
    VM_MAYWRITE: "mw", VM_MAYEXEC: "me", VM_MAYSHARE: "ms", VM_GROWSDOWN: "gd",
    VM_UFFD_MISSING: "um", VM_PFNMAP: "pf", VM_MAYBE_GUARD: "gu", VM_UFFD_WP: "uw",
    VM_LOCKED: "lo", VM_IO: "io", VM_SEQ_READ: "sr", VM_RAND_READ: "rr", VM_DONTCOPY: "dc",
    VM_DONTEXPAND: "de", VM_LOCKONFAULT: "lf", VM_ACCOUNT: "ac", VM_NORESERVE: "nr",
    VM_HUGETLB: "ht", VM_SYNC: "sf", VM_ARCH_1: "ar", VM_WIPEONFORK: "wf", VM_DONTDUMP: "dd",
    VM_MIXEDMAP: "mm", VM_HUGEPAGE: "hg", VM_NOHUGEPAGE: "nh", VM_MERGEABLE: "mg",
    VM_DROPPABLE: "dp", VM_SEALED: "sl",
}
_MNEMONIC_ORDER = sorted(_MNEMONICS)


def mnemonics(flags: int) -> str:
    """The ``VmFlags:`` text of smaps: each set flag's two letters and a space, in bit order."""
    return "".join(_MNEMONICS[bit] + " " for bit in _MNEMONIC_ORDER if flags & bit)


def calc_vm_prot_bits(prot: int) -> int:
    """``calc_vm_prot_bits``: PROT_READ/WRITE/EXEC to VM_READ/WRITE/EXEC (x86 has no pkey here)."""
    return prot & (abi.PROT_READ | abi.PROT_WRITE | abi.PROT_EXEC)


def calc_vm_flag_bits(flags: int) -> int:
    """``calc_vm_flag_bits``: GROWSDOWN, LOCKED, SYNC; MAP_STACK means VM_NOHUGEPAGE (THP built in);
    MAP_DROPPABLE means VM_DROPPABLE."""
    vm = 0
    if flags & abi.MAP_GROWSDOWN:
        vm |= VM_GROWSDOWN
    if flags & abi.MAP_LOCKED:
        vm |= VM_LOCKED
    if flags & abi.MAP_SYNC:
        vm |= VM_SYNC
    if flags & abi.MAP_STACK:
        vm |= VM_NOHUGEPAGE
    if flags & abi.MAP_TYPE == abi.MAP_DROPPABLE:
        vm |= VM_DROPPABLE
    return vm


def prot_of(flags: int) -> int:
    """The PROT_* bits a VMA's flags grant."""
    return flags & VM_ACCESS_FLAGS


def maps_perms(flags: int) -> str:
    """The ``rwxp``/``rwxs`` column of /proc/<pid>/maps (``show_map_vma``)."""
    return (
        ("r" if flags & VM_READ else "-")
        + ("w" if flags & VM_WRITE else "-")
        + ("x" if flags & VM_EXEC else "-")
        + ("s" if flags & VM_MAYSHARE else "p")
    )
