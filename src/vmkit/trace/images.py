"""What ``execve`` reads of a binary (fs/binfmt_elf.c, fs/binfmt_script.c): the part a recorded trace
carries so the model can rebuild the exec layout without the file itself."""

from __future__ import annotations

import os
import struct

PAGE_SIZE = 4096
BINPRM_BUF_SIZE = 256  # what binfmt_script reads of a "#!" line
PT_INTERP = 3


def _program_headers(data: bytes) -> list[tuple[int, int, int]] | None:
    """(p_type, p_offset, p_filesz) of a 64-bit ELF's program headers, or None if not one (or if
    they lie beyond ``data``)."""
    if data[:4] != b"\x7fELF" or len(data) < 64 or data[4] != 2:
        return None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    headers = []
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 56 > len(data):
            return None
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, at)
        headers.append((p_type, p_offset, p_filesz))
    return headers


def interpreter(data: bytes) -> str | None:
    """The PT_INTERP path of a 64-bit ELF file, or the interpreter of a ``#!`` script."""
    if data.startswith(b"#!"):
        line = data[2:BINPRM_BUF_SIZE].split(b"\n", 1)[0].strip()
        return os.fsdecode(line.split()[0]) if line else None
    for p_type, offset, size in _program_headers(data) or ():
        if p_type == PT_INTERP:
            return os.fsdecode(data[offset:offset + size].rstrip(b"\0"))
    return None


def exec_head(data: bytes) -> bytes:
    """The first bytes of a file that exec reads: at least a page; for ELF also the program headers
    and the PT_INTERP string wherever they lie within ``data``."""
    end = PAGE_SIZE
    headers = _program_headers(data)
    if headers:
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
        end = max(end, phoff + phentsize * phnum)
        for p_type, offset, size in headers:
            if p_type == PT_INTERP:
                end = max(end, offset + size)
    return data[:end]
