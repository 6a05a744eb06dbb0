"""The isolated child's whole runtime: a 120-byte static ELF and a page of x86-64 gadgets.

The child must not add or move mappings between calls, so it runs no C library, no allocator and no
interpreter.  It executes a tiny ELF whose only PT_LOAD has ``p_filesz == 0``: the kernel's
``fs/binfmt_elf.c:elf_load()`` then maps the segment with ``vm_brk_flags()``, an anonymous VMA, so the
child's maps hold no file at all (nothing whose inode changes between runs).  The child is traced
(``PTRACE_TRACEME``) and stops at its first instruction; the parent writes the gadget page below into
the segment through ``/proc/<pid>/mem`` and from then on only sets registers and continues it:

* ``syscall; int3`` runs one system call with the registers the parent chose;
* the probe loops touch the first byte of every page of a range with a real load (or a
  read-modify-write store), in address order, so faults, stack growth, copy-on-write and SIGBUS
  past EOF are the kernel's own; the data itself is then copied through ``/proc/<pid>/mem``;
* everything else in the page is ``int3``, so any stray continuation traps straight back.

The rest of the segment is scratch memory for the arguments that system calls take by pointer.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path

from vmkit.flags import PAGE_SIZE

#: Where the runtime segment lives in every child (a classic static-binary address).
RUNTIME_BASE = 0x400000
#: Size of the segment: one page of code and the rest scratch.
RUNTIME_SIZE = 0x100000
SCRATCH_BASE = RUNTIME_BASE + PAGE_SIZE
SCRATCH_SIZE = RUNTIME_SIZE - PAGE_SIZE

_INT3 = b"\xcc"

# Offsets of the gadgets inside the code page.
SYSCALL_OFF = 0x00
READ_PROBE_OFF = 0x10
WRITE_PROBE_OFF = 0x30
LOAD8_OFF = 0x50
REST_OFF = 0xF00

_SYSCALL = bytes.fromhex("0f05") + _INT3  # syscall; int3
_PAGE_STEP = (
    bytes.fromhex("4881e700f0ffff")  # and rdi, -4096
    + bytes.fromhex("4881c700100000")  # add rdi, 4096
    + bytes.fromhex("4839f7")  # cmp rdi, rsi
)
# loop: mov al, [rdi]; <step>; jb loop; int3
_READ_PROBE = bytes.fromhex("8a07") + _PAGE_STEP + bytes([0x72, (-(2 + len(_PAGE_STEP) + 2)) & 0xFF]) + _INT3
# loop: or byte [rdi], 0; <step>; jb loop; int3
_WRITE_PROBE = bytes.fromhex("800f00") + _PAGE_STEP + bytes([0x72, (-(3 + len(_PAGE_STEP) + 2)) & 0xFF]) + _INT3
# mov rax, [rdi]; int3  (8-byte loads for memory /proc/<pid>/mem cannot read, e.g. [vvar])
_LOAD8 = bytes.fromhex("488b07") + _INT3

READ_PROBE_LOOP = RUNTIME_BASE + READ_PROBE_OFF
WRITE_PROBE_LOOP = RUNTIME_BASE + WRITE_PROBE_OFF
SYSCALL_INSN = RUNTIME_BASE + SYSCALL_OFF
#: The ``int3`` after the ``syscall`` instruction (where RIP points if fetching it faults).
SYSCALL_TRAP = SYSCALL_INSN + len(_SYSCALL) - 1
LOAD8_INSN = RUNTIME_BASE + LOAD8_OFF
REST = RUNTIME_BASE + REST_OFF


def code_page() -> bytes:
    """The gadget page written at RUNTIME_BASE: the gadgets in a sea of ``int3``."""
    page = bytearray(_INT3 * PAGE_SIZE)
    for offset, code in (
        (SYSCALL_OFF, _SYSCALL), (READ_PROBE_OFF, _READ_PROBE),
        (WRITE_PROBE_OFF, _WRITE_PROBE), (LOAD8_OFF, _LOAD8),
    ):
        page[offset:offset + len(code)] = code
    return bytes(page)


def elf_image() -> bytes:
    """A static x86-64 ET_EXEC: one RWX PT_LOAD with no file bytes, and a non-executable stack."""
    ehdr_size, phdr_size, phnum = 64, 56, 2
    ehdr = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH",
        b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,  # ELFCLASS64, little-endian, version 1, SysV ABI
        2, 0x3E, 1,  # ET_EXEC, EM_X86_64, EV_CURRENT
        RUNTIME_BASE + REST_OFF,  # e_entry (never executed: the child stops at exec)
        ehdr_size, 0, 0,  # e_phoff, e_shoff, e_flags
        ehdr_size, phdr_size, phnum, 0, 0, 0,
    )
    pf_rwx, pf_rw = 7, 6
    load = struct.pack("<IIQQQQQQ", 1, pf_rwx, 0, RUNTIME_BASE, RUNTIME_BASE, 0, RUNTIME_SIZE, PAGE_SIZE)
    gnu_stack = struct.pack("<IIQQQQQQ", 0x6474E551, pf_rw, 0, 0, 0, 0, 0, 16)
    return ehdr + load + gnu_stack


def executable_path() -> Path:
    """The runtime ELF on disk (written once per content, per user), ready to execve."""
    image = elf_image()
    digest = hashlib.sha256(image).hexdigest()[:16]
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) / "vmkit" if cache else Path(tempfile.gettempdir()) / f"vmkit-{os.getuid()}"
    path = base / f"vmkit-child-{digest}"
    if not path.exists():
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = base / f".{path.name}.{os.getpid()}"
        tmp.write_bytes(image)
        tmp.chmod(0o755)
        os.replace(tmp, path)
    return path
