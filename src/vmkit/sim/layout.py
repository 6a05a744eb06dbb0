"""Building a model process's address space from a ``/proc/<pid>/maps`` text.

Each line becomes a VMA with the flags Linux gives such a mapping: private anonymous writable memory
is accounted (``ac``), ``[stack]`` grows down, ``[vvar]``/``[vvar_vclock]`` are I/O special mappings,
``[vdso]`` a special mapping, ``[vsyscall]`` is shown but is no VMA.  Private writable anonymous VMAs
are taken as touched (they have an anon_vma), as they are in a running process.  File lines map the
file of the same path in the model's file system (it must be there); ``/dev/zero (deleted)`` lines
(shared anonymous memory) and ``/memfd:`` lines get a new shmem object per inode number; file VMAs
start untouched.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vmkit.sim.anon import AnonVma, chain_assign
from vmkit.sim.frames import pool
from vmkit.sim.fs import OpenFile
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
    files = _layout_files(task, maps)
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
            vma = _file_vma(task, files, lineno, start, end, perms, offset, inode, name)
        elif name in _SPECIAL_FLAGS:
            vma = Vma(start, end, 0, _SPECIAL_FLAGS[name], special=name, anonymous=False)
        elif name == "[stack]":
            vma = Vma(start, end, start >> 12, VM_STACK_FLAGS | (VM_EXEC if perms[2] == "x" else 0))
            mm.start_stack = end - 1
        elif name in ("", "[heap]"):
            flags = _perm_flags(perms)
            if flags & VM_WRITE and not flags & VM_SHARED:
                flags |= VM_ACCOUNT
            if flags & VM_SHARED:
                raise LayoutError(f"maps line {lineno}: a shared mapping without a name: shared "
                                  "anonymous memory shows as /dev/zero (deleted)")
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


def _layout_files(task: Task, maps: str) -> dict[tuple[str, int], OpenFile]:
    """One open file per file or shmem object of the text (by name and inode number), as a process
    maps each object through one ``struct file``: a path of the model's file system (opened
    read-write if a line maps it shared and writable), the shmem object of shared anonymous memory
    or a memfd (one per inode number, as large as the furthest line maps)."""
    kernel = task.kernel
    extents: dict[tuple[str, int], int] = {}
    writable: set[tuple[str, int]] = set()
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or fields[5].startswith("[") or fields[4] == "0" and not fields[5]:
            continue
        try:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            key = (fields[5], int(fields[4]))
            extent = int(fields[2], 16) + end - start
        except ValueError:
            continue  # build_layout reports the line
        extents[key] = max(extents.get(key, 0), extent)
        if fields[1][1] == "w" and fields[1][3] == "s":
            writable.add(key)
    files: dict[tuple[str, int], OpenFile] = {}
    for key, extent in extents.items():
        name, _ = key
        if name == "/dev/zero (deleted)":
            files[key] = OpenFile(kernel.fs.shmem_zero(extent, task.cred.euid), os.O_RDWR)
        elif name.startswith("/memfd:") and name.endswith(" (deleted)"):
            inode = kernel.fs.memfd(name[len("/memfd:"):-len(" (deleted)")], task.cred.euid)
            inode.size = extent
            files[key] = OpenFile(inode, os.O_RDWR)
        elif name.startswith("/") and not name.endswith(" (deleted)") and not name.startswith("/SYSV"):
            found = kernel.fs.entries.get(name)
            if found is not None:
                files[key] = OpenFile(found, os.O_RDWR if key in writable else os.O_RDONLY)
    return files


def _file_vma(task: Task, files: dict[tuple[str, int], OpenFile], lineno: int, start: int, end: int,
              perms: str, offset: int, inode: int, name: str) -> Vma:
    """The VMA of a file-backed or shmem line, with the flags ``do_mmap`` gives such a mapping: a
    shared mapping of a file open read-only loses VM_SHARED and VM_MAYWRITE (its maps line still
    shows ``s``: VM_MAYSHARE); a private writable one is accounted.  A private mapping of
    /dev/zero is anonymous memory that names the device."""
    file = files.get((name, inode))
    if name == "/dev/zero" and perms[3] == "p":
        zero = task.kernel.fs.entries["/dev/zero"]
        return Vma(start, end, offset >> 12, _perm_flags(perms) | (VM_ACCOUNT if perms[1] == "w" else 0),
                   OpenFile(zero, os.O_RDWR), anonymous=True)
    if file is None:
        if name.startswith("/") and not name.endswith(" (deleted)") and not name.startswith("/SYSV"):
            raise LayoutError(f"maps line {lineno}: {name} is not in the model's file system "
                              "(add it first, e.g. with kernel.fs.import_host)")
        raise NotImplementedError(f"maps line {lineno}: mappings of {name or 'inode ' + str(inode)} "
                                  "cannot be copied")
    if file.inode.kind != "reg" and file.inode.path != "/dev/zero":
        raise LayoutError(f"maps line {lineno}: {name} is not a regular file")
    flags = _perm_flags(perms)
    if flags & VM_SHARED:
        if not file.writable:
            flags &= ~(VM_MAYWRITE | VM_SHARED)
    elif flags & VM_WRITE:
        flags |= VM_ACCOUNT
    return Vma(start, end, offset >> 12, flags, file)


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
