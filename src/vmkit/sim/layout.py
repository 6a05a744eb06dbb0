"""Building a model process's address space from a ``/proc/<pid>/maps`` text.

Each line becomes a VMA with the flags Linux gives such a mapping: private anonymous writable memory
is accounted (``ac``), ``[stack]`` grows down, ``[vvar]``/``[vvar_vclock]`` are I/O special mappings,
``[vdso]`` a special mapping, ``[vsyscall]`` is shown but is no VMA.  Private writable anonymous VMAs
are taken as touched (they have an anon_vma), as they are in a running process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmkit.sim.anon import AnonVma, chain_assign
from vmkit.sim.frames import pool
from vmkit.sim.vma import Vma
from vmkit.sim.vmflags import (
    VM_ACCOUNT, VM_DONTDUMP, VM_DONTEXPAND, VM_EXEC, VM_IO, VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE,
    VM_MAYWRITE, VM_PFNMAP, VM_READ, VM_SHARED, VM_STACK_FLAGS, VM_WRITE,
)

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

_SPECIAL_FLAGS = {
    "[vvar]": VM_READ | VM_MAYREAD | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP,
    "[vvar_vclock]": VM_READ | VM_MAYREAD | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP,
    "[vdso]": VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_DONTEXPAND,
}


class LayoutError(ValueError):
    """A maps text the model cannot take, with the line it stopped at."""


def _perm_flags(perms: str) -> int:
    flags = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if perms[0] == "r":
        flags |= VM_READ
    if perms[1] == "w":
        flags |= VM_WRITE
    if perms[2] == "x":
        flags |= VM_EXEC
    if perms[3] == "s":
        flags |= VM_SHARED | VM_MAYSHARE
    return flags


def build_layout(task: Task, maps: str, brk: int | None) -> None:
    """Fills ``task.mm`` with the VMAs of a maps text; ``brk`` is the program break (start_brk and
    brk both), defaulting to the end of a ``[heap]`` line if there is one."""
    mm = task.mm
    heap_end = None
    for lineno, line in enumerate(maps.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(None, 5)
        try:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            perms, offset, inode = fields[1], int(fields[2], 16), int(fields[4])
        except (ValueError, IndexError):
            raise LayoutError(f"maps line {lineno} is not in /proc/<pid>/maps form: {line!r}") from None
        name = fields[5] if len(fields) > 5 else ""
        if name == "[vsyscall]":
            mm.vsyscall = True
            continue
        if inode or (name and not name.startswith("[")):
            raise NotImplementedError(
                f"maps line {lineno}: layouts with file mappings ({name}) cannot be copied yet"
            )
        if name in _SPECIAL_FLAGS:
            vma = Vma(start, end, 0, _SPECIAL_FLAGS[name], special=name, anonymous=False)
        elif name == "[stack]":
            vma = Vma(start, end, start >> 12, VM_STACK_FLAGS | (VM_EXEC if perms[2] == "x" else 0))
            mm.start_stack = end - 1
        elif name in ("", "[heap]"):
            flags = _perm_flags(perms)
            if flags & VM_WRITE and not flags & VM_SHARED:
                flags |= VM_ACCOUNT
            if flags & VM_SHARED:
                raise NotImplementedError(f"maps line {lineno}: shared anonymous layouts cannot be copied yet")
            vma = Vma(start, end, start >> 12 if not offset else offset >> 12, flags)
            if name == "[heap]":
                heap_end = end
        else:
            raise NotImplementedError(f"maps line {lineno}: special mapping {name} is not modelled")
        if vma.anonymous and vma.flags & VM_WRITE:
            anon_vma = AnonVma()
            anon_vma.num_children = 1
            anon_vma.num_active_vmas = 1
            vma.anon_vma = anon_vma
            chain_assign(vma, anon_vma)
        mm.insert_vma(vma)
        mm.account_vma(vma, +1)
    if brk is None:
        brk = heap_end if heap_end is not None else 0
    mm.start_brk = mm.brk = brk
    _touch_first_pages(task)


def _touch_first_pages(task: Task) -> None:
    """A running process has written the first page of its writable anonymous VMAs (the native
    child's code page, the top of its stack): give them a private frame, as Rss shows."""
    mm = task.mm
    for vma in mm.vmas:
        if vma.anonymous and vma.flags & VM_WRITE:
            page = vma.end - 4096 if vma.flags & 0x100 else vma.start
            frame = pool().alloc()
            pool().dirty[frame] = 1
            mm.install(page >> 12, frame, True, True)
