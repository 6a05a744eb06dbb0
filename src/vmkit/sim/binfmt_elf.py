"""The ELF loader (fs/binfmt_elf.c): program headers, segments, the interpreter, the vDSO, the
initial stack frame and the break, as Linux 6.18 x86-64 builds them with ASLR off.

:func:`prepare` is the part of ``load_elf_binary`` before the point of no return (header checks,
PT_INTERP, PT_GNU_STACK); :func:`load_elf_binary` the part after it, in the kernel's order, which
decides placement: the stack's final size, the PT_LOAD segments, the interpreter top-down below
``mmap_base``, ``[vvar]``/``[vvar_vclock]``/``[vdso]`` (arch/x86/entry/vdso/vma.c ``map_vdso``)
top-down below that, ``create_elf_tables``, then the break.  Headers are parsed with pyelftools'
structures from the model file's page cache; only the ELF header, the program headers and the
PT_INTERP string are read, as the kernel does.
"""

from __future__ import annotations

import errno
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmkit.errors import BusError, SegmentationFault, os_error
from vmkit.flags import PAGE_SIZE, TASK_SIZE
from vmkit.sim import abi
from vmkit.sim.exec import (
    BINPRM_BUF_SIZE, EXSTACK_DEFAULT, EXSTACK_DISABLE_X, EXSTACK_ENABLE_X, STACK_TOP, open_exec,
    setup_arg_pages, strlen_user, write_user,
)
from vmkit.sim.fs import Inode, OpenFile
from vmkit.sim.layout import _SPECIAL_FLAGS
from vmkit.sim.vma import Vma
from vmkit.sim.vmflags import VM_EXEC

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

#: ``ELF_ET_DYN_BASE`` (arch/x86/include/asm/elf.h): ``DEFAULT_MAP_WINDOW / 3 * 2``.
ELF_ET_DYN_BASE = ((1 << 47) - PAGE_SIZE) // 3 * 2
PATH_MAX = 4096
ELF_MIN_ALIGN = PAGE_SIZE
EM_X86_64, EM_386, EM_486 = 62, 3, 6
PF_X, PF_W, PF_R = 1, 2, 4
#: The special mappings ``map_vdso`` installs, in address order, and their sizes on our kernel
#: (the ``[vvar]`` data pages, the clock pages, the 2-page vDSO image).
VDSO_LAYOUT = (("[vvar]", 4 * PAGE_SIZE), ("[vvar_vclock]", 2 * PAGE_SIZE), ("[vdso]", 2 * PAGE_SIZE))
_MASK64 = (1 << 64) - 1


def _page_start(x: int) -> int:
    return x & ~(PAGE_SIZE - 1) & _MASK64


def _page_offset(x: int) -> int:
    return x & (PAGE_SIZE - 1)


def _page_align(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & _MASK64


def _bad_addr(x: int) -> bool:
    """``BAD_ADDR``: an address at or above TASK_SIZE."""
    return x >= TASK_SIZE


def elf_read(inode: Inode, length: int, pos: int) -> bytes:
    """``elf_read``: exactly ``length`` bytes at ``pos``, else EIO."""
    data = inode.read(length, pos)
    if len(data) != length:
        raise os_error(errno.EIO)
    return data


@dataclass(frozen=True)
class Phdr:
    """One program header (``struct elf64_phdr``); ``p_type`` is pyelftools' name or number."""

    p_type: Any
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


@dataclass
class ElfImage:
    """A binary being loaded: its opened file, ELF header fields and program headers."""

    file: OpenFile
    e_type: Any
    e_entry: int
    e_phoff: int
    phdrs: list[Phdr]

    @property
    def loads(self) -> list[Phdr]:
        return [p for p in self.phdrs if p.p_type == "PT_LOAD"]


def _structs() -> Any:
    from elftools.elf.structs import ELFStructs

    structs = ELFStructs(little_endian=True, elfclass=64)
    structs.create_basic_structs()
    structs.create_advanced_structs("ET_DYN", "EM_X86_64", "ELFOSABI_SYSV")
    return structs


def read_ehdr(inode: Inode, error: int) -> Any:
    """The 64-bit ELF header, checked as ``load_elf_binary``/``load_elf_interp`` check it:
    magic, then x86-64.  ``error`` is the errno of a failed check (ENOEXEC, or ELIBBAD for the
    interpreter).  32-bit (compat) binaries raise NotImplementedError."""
    from elftools.common.utils import struct_parse

    head = inode.read(BINPRM_BUF_SIZE, 0)
    if head[:4] != b"\x7fELF":
        raise os_error(error)
    if len(head) < 64:
        raise os_error(error)
    machine = int.from_bytes(head[18:20], "little")
    if head[4] == 1 and machine in (EM_386, EM_486, EM_X86_64):
        raise NotImplementedError("exec of 32-bit ELF binaries (compat_binfmt_elf) is not modelled")
    ehdr = struct_parse(_structs().Elf_Ehdr, io.BytesIO(head), 0)
    if machine != EM_X86_64:
        raise os_error(error)
    return ehdr


def load_elf_phdrs(inode: Inode, ehdr: Any) -> list[Phdr] | None:
    """``load_elf_phdrs``: None when e_phentsize is not 56 or the table is empty or larger than a
    page; EIO when the file is too short."""
    from elftools.common.utils import struct_parse

    size = 56 * ehdr["e_phnum"]
    if ehdr["e_phentsize"] != 56 or size == 0 or size > 65536 or size > ELF_MIN_ALIGN:
        return None
    raw = elf_read(inode, size, ehdr["e_phoff"])
    structs = _structs()
    out = []
    for i in range(ehdr["e_phnum"]):
        h = struct_parse(structs.Elf_Phdr, io.BytesIO(raw), i * 56)
        out.append(Phdr(h["p_type"], h["p_flags"], h["p_offset"], h["p_vaddr"], h["p_filesz"],
                        h["p_memsz"], h["p_align"]))
    return out


def headers_extent(inode: Inode) -> int:
    """How many leading bytes of ``inode`` exec reads: the BINPRM buffer, the program headers and
    the PT_INTERP string (what a rebuilt image must hold)."""
    ehdr = read_ehdr(inode, errno.ENOEXEC)
    extent = max(BINPRM_BUF_SIZE, int(ehdr["e_phoff"]) + 56 * int(ehdr["e_phnum"]))
    for p in load_elf_phdrs(inode, ehdr) or []:
        if p.p_type == "PT_INTERP":
            extent = max(extent, p.p_offset + p.p_filesz)
    return extent


def total_mapping_size(phdrs: list[Phdr]) -> int:
    """``total_mapping_size``: from the first PT_LOAD's page to the end of the highest one."""
    loads = [p for p in phdrs if p.p_type == "PT_LOAD"]
    if not loads:
        return 0
    return max(p.p_vaddr + p.p_memsz for p in loads) - min(_page_start(p.p_vaddr) for p in loads)


def maximum_alignment(phdrs: list[Phdr]) -> int:
    """``maximum_alignment``: the largest power-of-two p_align of the PT_LOADs, page-aligned."""
    alignment = 0
    for p in phdrs:
        if p.p_type == "PT_LOAD" and p.p_align and not p.p_align & (p.p_align - 1):
            alignment = max(alignment, p.p_align)
    return _page_align(alignment)


def make_prot(p_flags: int) -> int:
    """``make_prot``: PF_R/W/X to PROT_READ/WRITE/EXEC (x86 adjusts nothing)."""
    return ((abi.PROT_READ if p_flags & PF_R else 0) | (abi.PROT_WRITE if p_flags & PF_W else 0)
            | (abi.PROT_EXEC if p_flags & PF_X else 0))


def _vm_mmap(task: Task, file: OpenFile, addr: int, length: int, prot: int, flags: int,
             offset: int) -> int:
    from vmkit.sim.sys_mmap import do_mmap

    if _page_offset(offset):
        raise os_error(errno.EINVAL)
    return do_mmap(task, file, addr, length, prot, flags, offset >> 12)


def elf_map(task: Task, file: OpenFile, addr: int, p: Phdr, prot: int, type_: int,
            total_size: int) -> int:
    """``elf_map``: map the file part of a segment; with ``total_size``, map the whole image span
    there first and unmap what lies past this segment (the image's room is reserved)."""
    size = _page_align(p.p_filesz + _page_offset(p.p_vaddr))
    off = p.p_offset - _page_offset(p.p_vaddr)
    addr = _page_start(addr)
    if not size:
        return addr
    if total_size:
        total_size = _page_align(total_size)
        map_addr = _vm_mmap(task, file, addr, total_size, prot, type_, off)
        task.mm.munmap_range(map_addr + size, map_addr + total_size)
        return map_addr
    return _vm_mmap(task, file, addr, size, prot, type_, off)


def padzero(task: Task, address: int) -> bool:
    """``padzero``: zero the rest of the page after the file bytes (a user write: the page becomes a
    private copy); False when the write faults."""
    nbyte = _page_offset(address)
    if not nbyte:
        return True
    try:
        write_user(task.mm, address, bytes(PAGE_SIZE - nbyte))
    except (SegmentationFault, BusError):
        return False
    return True


def vm_brk_flags(task: Task, addr: int, length: int, extra: int) -> None:
    """``vm_brk_flags``: anonymous memory at [addr, addr+length) like brk's (VM_EXEC may be added),
    replacing whatever was there, extending an anonymous VMA that ends at ``addr``."""
    from vmkit.sim.sys_mmap import do_brk_flags

    if not length:
        return
    mm = task.mm
    mm.get_unmapped_area(None, addr, length, 0, abi.MAP_FIXED)  # check_brk_limits
    mm.munmap_range(addr, addr + length)
    if not do_brk_flags(task, addr, length, extra):
        raise os_error(errno.ENOMEM)


def elf_load(task: Task, file: OpenFile, addr: int, p: Phdr, prot: int, type_: int,
             total_size: int) -> int:
    """``elf_load``: the file part (``elf_map``), ``padzero`` of the last file page when memsz >
    filesz (EFAULT only for a writable segment), and ``vm_brk_flags`` for the whole pages beyond."""
    if p.p_filesz:
        map_addr = elf_map(task, file, addr, p, prot, type_, total_size)
        zero_start = map_addr + _page_offset(p.p_vaddr) + p.p_filesz
        zero_end = map_addr + _page_offset(p.p_vaddr) + p.p_memsz
        if p.p_memsz > p.p_filesz and not padzero(task, zero_start) and prot & abi.PROT_WRITE:
            raise os_error(errno.EFAULT)
    else:
        map_addr = zero_start = _page_start(addr)
        zero_end = zero_start + _page_offset(p.p_vaddr) + p.p_memsz
    if p.p_memsz > p.p_filesz:
        zero_start, zero_end = _page_align(zero_start), _page_align(zero_end)
        vm_brk_flags(task, zero_start, zero_end - zero_start, VM_EXEC if prot & abi.PROT_EXEC else 0)
    return map_addr


def _check_segment(p: Phdr, k: int) -> None:
    if _bad_addr(k) or p.p_filesz > p.p_memsz or p.p_memsz > TASK_SIZE or TASK_SIZE - p.p_memsz < k:
        raise os_error(errno.EINVAL)


def load_elf_interp(task: Task, interp: ElfImage, no_base: int) -> int:
    """``load_elf_interp``: an ET_DYN interpreter goes where ``get_unmapped_area`` puts its whole
    span (top-down below mmap_base), later segments MAP_FIXED after it; returns its load address."""
    total_size = total_mapping_size(interp.phdrs)
    if not total_size:
        raise os_error(errno.EINVAL)
    load_addr = 0
    load_addr_set = False
    for p in interp.loads:
        elf_type = abi.MAP_PRIVATE
        vaddr = p.p_vaddr
        if interp.e_type == "ET_EXEC" or load_addr_set:
            elf_type |= abi.MAP_FIXED
        elif no_base and interp.e_type == "ET_DYN":
            load_addr = (-vaddr) & _MASK64
        map_addr = elf_load(task, interp.file, (load_addr + vaddr) & _MASK64, p, make_prot(p.p_flags),
                            elf_type, total_size)
        total_size = 0
        if not load_addr_set and interp.e_type == "ET_DYN":
            load_addr = (map_addr - _page_start(vaddr)) & _MASK64
            load_addr_set = True
        _check_segment(p, (load_addr + p.p_vaddr) & _MASK64)
    return load_addr


def map_vdso(task: Task) -> int:
    """``map_vdso`` (arch/x86/entry/vdso/vma.c): one top-down ``get_unmapped_area`` for the data
    pages and the image together; ``[vvar]``, ``[vvar_vclock]`` then ``[vdso]`` from its start.
    Returns the address of ``[vdso]`` (AT_SYSINFO_EHDR)."""
    mm = task.mm
    total = sum(size for _, size in VDSO_LAYOUT)
    addr = mm.get_unmapped_area(None, 0, total, 0, 0)
    for name, size in VDSO_LAYOUT:
        vma = Vma(addr, addr + size, 0, _SPECIAL_FLAGS[name], special=name, anonymous=False)
        mm.insert_vma(vma)
        mm.account_vma(vma, +1)
        addr += size
    return addr - VDSO_LAYOUT[-1][1]


# --- the initial stack frame (create_elf_tables) ---------------------------------------------------

AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_RSEQ_FEATURE_SIZE, AT_RSEQ_ALIGN = 23, 25, 26, 27, 28
AT_EXECFN, AT_SYSINFO_EHDR, AT_MINSIGSTKSZ = 31, 33, 51
#: The machine's constants in the auxiliary vector when /proc/self/auxv cannot be read (ours).
_MACHINE_AUXV = {AT_MINSIGSTKSZ: 0x6F0, AT_HWCAP: 0x178BFBFF, AT_PAGESZ: PAGE_SIZE, AT_CLKTCK: 100,
                 AT_HWCAP2: 2, AT_RSEQ_FEATURE_SIZE: 28, AT_RSEQ_ALIGN: 32}
ELF_PLATFORM = b"x86_64"


def machine_auxv() -> dict[int, int]:
    """The CPU- and kernel-given auxv entries (HWCAP, HWCAP2, MINSIGSTKSZ, PAGESZ, CLKTCK, RSEQ), as
    this same kernel gave them to our own process."""
    values = dict(_MACHINE_AUXV)
    try:
        raw = Path("/proc/self/auxv").read_bytes()
    except OSError:
        return values
    for i in range(0, len(raw) - 15, 16):
        key, value = int.from_bytes(raw[i:i + 8], "little"), int.from_bytes(raw[i + 8:i + 16], "little")
        if key in values:
            values[key] = value
    return values


@dataclass
class EntryInfo:
    """What ``create_elf_tables`` puts in the auxiliary vector about the new image."""

    phdr_addr: int
    phnum: int
    interp_load_addr: int
    e_entry: int
    vdso: int
    execfn: int


def create_elf_tables(task: Task, p: int, argv_count: int, envp_count: int, info: EntryInfo) -> int:
    """``create_elf_tables`` (ASLR off: ``arch_align_stack`` only rounds down to 16): the platform
    string and 16 random bytes below the strings, then argc, the argv and envp pointers and the
    auxiliary vector, 16-byte aligned.  Returns the initial stack pointer (``mm->start_stack``)."""
    mm = task.mm
    arg_start = p
    p &= ~0xF
    p -= len(ELF_PLATFORM) + 1
    u_platform = p
    write_user(mm, u_platform, ELF_PLATFORM + b"\0")
    p -= 16
    u_rand_bytes = p
    write_user(mm, u_rand_bytes, task.kernel.random.randbytes(16))
    machine = machine_auxv()
    cred = task.cred
    auxv = [
        (AT_SYSINFO_EHDR, info.vdso), (AT_MINSIGSTKSZ, machine[AT_MINSIGSTKSZ]),
        (AT_HWCAP, machine[AT_HWCAP]), (AT_PAGESZ, machine[AT_PAGESZ]), (AT_CLKTCK, machine[AT_CLKTCK]),
        (AT_PHDR, info.phdr_addr), (AT_PHENT, 56), (AT_PHNUM, info.phnum),
        (AT_BASE, info.interp_load_addr), (AT_FLAGS, 0), (AT_ENTRY, info.e_entry),
        (AT_UID, cred.ruid), (AT_EUID, cred.euid), (AT_GID, cred.rgid), (AT_EGID, cred.egid),
        (AT_SECURE, 0), (AT_RANDOM, u_rand_bytes), (AT_HWCAP2, machine[AT_HWCAP2]),
        (AT_EXECFN, info.execfn), (AT_PLATFORM, u_platform),
        (AT_RSEQ_FEATURE_SIZE, machine[AT_RSEQ_FEATURE_SIZE]), (AT_RSEQ_ALIGN, machine[AT_RSEQ_ALIGN]),
        (AT_NULL, 0),
    ]
    sp = p - 16 * len(auxv)
    items = (argv_count + 1) + (envp_count + 1) + 1
    start = (sp - 8 * items) & ~0xF
    words = [argv_count]
    # the pointers walk the strings from arg_start: argv[0] is lowest, the environment follows
    pos = arg_start
    for count in (argv_count, envp_count):
        for _ in range(count):
            words.append(pos)
            pos += strlen_user(mm, pos) + 1
        words.append(0)
    for key, value in auxv:
        words += [key, value & _MASK64]
    write_user(mm, start, b"".join(w.to_bytes(8, "little") for w in words))
    return start


# --- load_elf_binary ------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What ``load_elf_binary`` checked before the point of no return."""

    image: ElfImage
    interp: ElfImage | None
    executable_stack: int


def prepare(task: Task, file: OpenFile) -> Prepared:
    """``load_elf_binary`` up to ``begin_new_exec``: the binary's headers (ENOEXEC), its PT_INTERP
    (opened: its errors, ELIBBAD for a bad interpreter) and PT_GNU_STACK."""
    image = _open_image(task, file, errno.ENOEXEC)
    interp_path = _interpreter_path(image)
    executable_stack = EXSTACK_DEFAULT
    for ph in image.phdrs:
        if ph.p_type == "PT_GNU_STACK":
            executable_stack = EXSTACK_ENABLE_X if ph.p_flags & PF_X else EXSTACK_DISABLE_X
    interp = _open_image(task, interp_path, errno.ELIBBAD) if interp_path is not None else None
    return Prepared(image, interp, executable_stack)


def _open_image(task: Task, target: str | OpenFile, error: int) -> ElfImage:
    file = open_exec(task, target) if isinstance(target, str) else target
    ehdr = read_ehdr(file.inode, error)
    if ehdr["e_type"] not in ("ET_EXEC", "ET_DYN"):
        raise os_error(error)
    phdrs = load_elf_phdrs(file.inode, ehdr)
    if phdrs is None:
        raise os_error(error)
    return ElfImage(file, ehdr["e_type"], ehdr["e_entry"], ehdr["e_phoff"], phdrs)


def _interpreter_path(image: ElfImage) -> str | None:
    """The PT_INTERP string (ENOEXEC if its size is out of [2, PATH_MAX] or it is not
    NUL-terminated)."""
    for p in image.phdrs:
        if p.p_type != "PT_INTERP":
            continue
        if p.p_filesz > PATH_MAX or p.p_filesz < 2:
            raise os_error(errno.ENOEXEC)
        raw = elf_read(image.file.inode, p.p_filesz, p.p_offset)
        if raw[-1] != 0:
            raise os_error(errno.ENOEXEC)
        return os.fsdecode(raw[:-1].split(b"\0")[0])
    return None


def load_elf_binary(task: Task, prepared: Prepared, stack: Vma, p: int, filename: bytes, argc: int,
                    envc: int) -> None:
    """``load_elf_binary`` from ``setup_new_exec`` on, in the new mm: ``stack`` is the stack VMA,
    ``p`` the lowest string (``bprm->p``)."""
    image, interp, executable_stack = prepared.image, prepared.interp, prepared.executable_stack
    kernel = task.kernel
    mm = task.mm
    mm.mmap_base = kernel.mmap_base(task.rlimit_cur("RLIMIT_STACK"))  # arch_pick_mmap_layout
    setup_arg_pages(task, mm, stack, executable_stack)
    elf_brk = 0
    load_bias = 0
    phdr_addr = 0
    start_code, end_code = _MASK64, 0
    first = True
    for ph in image.loads:
        prot = make_prot(ph.p_flags)
        flags = abi.MAP_PRIVATE
        vaddr = ph.p_vaddr
        total_size = 0
        if not first:
            flags |= abi.MAP_FIXED
        elif image.e_type == "ET_EXEC":
            flags |= abi.MAP_FIXED_NOREPLACE
        elif image.e_type == "ET_DYN":
            total_size = total_mapping_size(image.phdrs)
            if not total_size:
                raise os_error(errno.EINVAL)
            alignment = maximum_alignment(image.phdrs)
            if interp is not None:
                load_bias = ELF_ET_DYN_BASE
                if alignment:
                    load_bias &= ~(alignment - 1)
                flags |= abi.MAP_FIXED_NOREPLACE
            elif alignment > ELF_MIN_ALIGN:
                load_bias = elf_load(task, image.file, 0, ph, prot, flags, total_size)
                mm.munmap_range(load_bias, load_bias + _page_align(total_size))
                if alignment:
                    load_bias &= ~(alignment - 1)
                flags |= abi.MAP_FIXED_NOREPLACE
            else:
                load_bias = 0
            load_bias = _page_start((load_bias - vaddr) & _MASK64)
        error = elf_load(task, image.file, (load_bias + vaddr) & _MASK64, ph, prot, flags, total_size)
        if first:
            first = False
            if image.e_type == "ET_DYN":
                load_bias = (load_bias + error - _page_start((load_bias + vaddr) & _MASK64)) & _MASK64
        if ph.p_offset <= image.e_phoff < ph.p_offset + ph.p_filesz:
            phdr_addr = image.e_phoff - ph.p_offset + ph.p_vaddr
        if ph.p_flags & PF_X:
            start_code = min(start_code, ph.p_vaddr)
            end_code = max(end_code, ph.p_vaddr + ph.p_filesz)
        _check_segment(ph, ph.p_vaddr)
        elf_brk = max(elf_brk, ph.p_vaddr + ph.p_memsz)
    elf_brk = (elf_brk + load_bias) & _MASK64
    interp_load_addr = 0
    if interp is not None:
        interp_load_addr = load_elf_interp(task, interp, load_bias)
    vdso = map_vdso(task)
    info = EntryInfo(phdr_addr=(phdr_addr + load_bias) & _MASK64, phnum=len(image.phdrs),
                     interp_load_addr=interp_load_addr, e_entry=(image.e_entry + load_bias) & _MASK64,
                     vdso=vdso, execfn=STACK_TOP - 8 - len(filename) - 1)
    start_stack = create_elf_tables(task, p, argc, envc, info)
    # no CONFIG_COMPAT_BRK: a static PIE's break starts at ELF_ET_DYN_BASE even without ASLR
    if image.e_type == "ET_DYN" and interp is None:
        elf_brk = ELF_ET_DYN_BASE
    mm.start_brk = mm.brk = _page_align(elf_brk)
    mm.start_stack = start_stack
    mm.start_code = (start_code + load_bias) & _MASK64
    mm.end_code = (end_code + load_bias) & _MASK64


__all__ = ["ELF_ET_DYN_BASE", "Prepared", "headers_extent", "load_elf_binary", "prepare"]
