"""execve: the initial address space Linux 6.18 x86-64 builds, ASLR off.

Sources: fs/exec.c (``do_execveat_common``, ``alloc_bprm``/``do_open_execat``, ``bprm_stack_limits``,
``copy_strings``, ``get_arg_page``, ``remove_arg_zero``, ``exec_binprm``, ``setup_arg_pages``,
``begin_new_exec``) and mm/vma_exec.c (``create_init_stack_vma``).  The binary formats are
:mod:`vmkit.sim.binfmt_script` (``#!``) and :mod:`vmkit.sim.binfmt_elf`.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vmkit.errors import BusError, ProcessGone, SegmentationFault, os_error
from vmkit.flags import PAGE_SIZE, TASK_SIZE
from vmkit.sim.frames import pool
from vmkit.sim.fs import Inode, OpenFile
from vmkit.sim.mm import MemoryManager
from vmkit.sim.vma import Vma
from vmkit.sim.vmflags import VM_EXEC, VM_STACK_FLAGS

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

#: ``STACK_TOP_MAX`` with 4-level paging (``TASK_SIZE_MAX``): the temporary stack's end; with ASLR
#: off ``STACK_TOP`` is the same, so ``setup_arg_pages`` does not move it.
STACK_TOP = TASK_SIZE
BINPRM_BUF_SIZE = 256
MAX_ARG_STRLEN = 32 * PAGE_SIZE
MAX_ARG_STRINGS = 0x7FFFFFFF
ARG_MAX = 32 * PAGE_SIZE
_STK_LIM = 8 << 20
EXSTACK_DEFAULT, EXSTACK_DISABLE_X, EXSTACK_ENABLE_X = 0, 1, 2
#: ``exec_binprm``: binary-format rewrites (``#!``) allowed before ELOOP, plus the final load.
MAX_DEPTH = 6


# --- opening ------------------------------------------------------------------------------------


def _lookup(task: Task, path: str) -> Inode:
    """Path walk for exec: symlinks followed; a missing file comes from the host when the kernel
    has ``host_files``; ENOENT/ENOTDIR/EACCES as ``path_openat`` gives them."""
    kernel = task.kernel
    fs = kernel.fs
    if not path:
        raise os_error(errno.ENOENT, path)
    real = fs.resolve(path)
    parts = real.strip("/").split("/")
    for i in range(1, len(parts)):
        prefix = "/" + "/".join(parts[:i])
        inode = fs.entries.get(prefix)
        if inode is None:
            break
        if inode.kind != "dir":
            raise os_error(errno.ENOTDIR, path)
    inode = fs.entries.get(real)
    if inode is None and getattr(kernel, "host_files", False):
        try:
            st = os.stat(real)
        except OSError as e:
            raise os_error(e.errno or errno.ENOENT, path) from None
        host_real = os.path.realpath(real)
        if not stat.S_ISREG(st.st_mode):
            raise os_error(errno.EACCES, path)
        inode = fs.entries.get(host_real) or fs.import_host(host_real)
        if host_real != real:
            fs.symlink(host_real, real)
    if inode is None:
        fs._parent(real)  # ENOENT or ENOTDIR for the directory part
        raise os_error(errno.ENOENT, path)
    fs._search(real, task.cred.euid, task.capable("CAP_DAC_READ_SEARCH") or task.capable("CAP_DAC_OVERRIDE"))
    return inode


def open_exec(task: Task, path: str) -> OpenFile:
    """``do_open_execat``: the file must be a regular file (``may_open``: EACCES otherwise) with
    execute permission (``generic_permission``: for CAP_DAC_OVERRIDE, at least one x bit)."""
    inode = _lookup(task, path)
    if inode.kind != "reg":
        raise os_error(errno.EACCES, path)
    mode = inode.mode
    if task.capable("CAP_DAC_OVERRIDE"):
        allowed = bool(mode & 0o111)
    else:
        cred = task.cred
        bits = mode >> 6 if inode.uid == cred.euid else mode
        allowed = bool(bits & 0o1)
    if not allowed:
        raise os_error(errno.EACCES, path)
    return OpenFile(inode, os.O_RDONLY)


# --- the new stack (bprm_mm_init, copy_strings, setup_arg_pages) ---------------------------------


def write_user(mm: MemoryManager, addr: int, data: bytes) -> None:
    """A kernel write to user memory of the new mm (``copy_to_user``/``get_arg_page``)."""
    view = pool().view

    def visit(frame: int, offset: int, done: int, take: int) -> None:
        start = frame * PAGE_SIZE + offset
        view[start:start + take] = data[done:done + take]

    mm.access(addr, len(data), True, visit)


def bprm_stack_limits(rlim_stack: int, argc: int, envc: int) -> int:
    """``bprm_stack_limits``: the room for argv+envp strings: min(3/4 of _STK_LIM, 1/4 of the stack
    limit), at least ARG_MAX, less the pointers; E2BIG when nothing is left."""
    limit = min(_STK_LIM // 4 * 3, rlim_stack // 4)
    limit = max(limit, ARG_MAX)
    ptr_size = (max(argc, 1) + envc) * 8
    if limit <= ptr_size:
        raise os_error(errno.E2BIG)
    return limit - ptr_size


def build_stack(task: Task, mm: MemoryManager, filename: bytes, argv: list[bytes],
                envp: list[bytes]) -> tuple[Vma, int, int]:
    """``create_init_stack_vma`` + ``copy_strings``: a one-page stack VMA ending at STACK_TOP, then
    the filename, the environment and the arguments copied downward from STACK_TOP - 8, the VMA
    growing over every page they touch (``get_arg_page``: E2BIG when it cannot).  Returns the VMA,
    ``bprm->p`` and ``bprm->argmin``."""
    vma = Vma(STACK_TOP - PAGE_SIZE, STACK_TOP, (STACK_TOP - PAGE_SIZE) >> 12, VM_STACK_FLAGS)
    mm.insert_vma(vma)
    mm.account_vma(vma, +1)
    p = STACK_TOP - 8
    limit = bprm_stack_limits(task.rlimit_cur("RLIMIT_STACK"), len(argv), len(envp))
    argmin = p - limit
    # each copy_strings walks its array from the last string down: argv[0] ends up lowest
    strings = [filename, *reversed(envp), *reversed(argv)] + ([b""] if not argv else [])
    for s in strings:
        p = copy_string(mm, p, argmin, s)
    return vma, p, argmin


def copy_string(mm: MemoryManager, p: int, argmin: int, s: bytes) -> int:
    """``copy_string_kernel``/``copy_strings`` of one string: it ends at ``p``; E2BIG when longer
    than MAX_ARG_STRLEN, below ``argmin`` or where the stack cannot grow.  Returns the new p."""
    data = s + b"\0"
    if len(data) > MAX_ARG_STRLEN:
        raise os_error(errno.E2BIG)
    p -= len(data)
    if p < argmin:
        raise os_error(errno.E2BIG)
    try:
        write_user(mm, p, data)
    except (SegmentationFault, BusError):
        raise os_error(errno.E2BIG) from None
    return p


def setup_arg_pages(task: Task, mm: MemoryManager, vma: Vma, executable_stack: int) -> None:
    """``setup_arg_pages`` with ASLR off (no shift): the stack's exec bit from PT_GNU_STACK, then
    growth to min(RLIMIT_STACK & PAGE_MASK, its size + 128 KiB) below its end."""
    flags = vma.flags
    if executable_stack == EXSTACK_ENABLE_X:
        flags |= VM_EXEC
    elif executable_stack == EXSTACK_DISABLE_X:
        flags &= ~VM_EXEC
    flags |= mm.def_flags
    if flags != vma.flags:
        mm.account_vma(vma, -1)
        vma.flags = flags
        mm.account_vma(vma, +1)
    stack_size = vma.end - vma.start
    rlim_stack = task.rlimit_cur("RLIMIT_STACK") & ~(PAGE_SIZE - 1)
    stack_expand = min(rlim_stack, stack_size + 131072)
    stack_base = vma.end - stack_expand
    if vma.start > stack_base and not mm.expand_stack(vma, stack_base):
        raise os_error(errno.EFAULT)


def strlen_user(mm: MemoryManager, addr: int) -> int:
    out = bytearray()
    view = pool().view

    def visit(frame: int, offset: int, done: int, take: int) -> None:
        base = frame * PAGE_SIZE + offset
        out.extend(view[base:base + take])

    n = 0
    while True:
        chunk = PAGE_SIZE - ((addr + n) & (PAGE_SIZE - 1))
        out.clear()
        mm.access(addr + n, chunk, False, visit)
        end = out.find(b"\0")
        if end >= 0:
            return n + end
        n += chunk


def remove_arg_zero(mm: MemoryManager, p: int) -> int:
    """``remove_arg_zero``: ``bprm->p`` moves past argv[0]'s string (the stack keeps its pages)."""
    return p + strlen_user(mm, p) + 1


# --- execve ---------------------------------------------------------------------------------------


def do_execve(task: Task, path: str | bytes, argv: Sequence[str | bytes],
              envp: Sequence[str | bytes]) -> None:
    """``do_execveat_common`` → ``bprm_execve`` → ``exec_binprm`` for ``task``: its address
    space is replaced by the new program's as Linux lays it out at the first instruction.

    Errors before the point of no return (``begin_new_exec``) raise OSError and leave the task as
    it was; an error after it kills the task (SIGSEGV, as ``force_fatal_sig``) and raises
    ProcessGone."""
    from vmkit.sim.binfmt_elf import load_elf_binary, prepare
    from vmkit.sim.binfmt_script import parse_script

    kernel = task.kernel
    if kernel.aslr:
        raise NotImplementedError("exec with ASLR on (randomised load bias, stack, vdso and brk) is not modelled")
    spath = os.fsdecode(path)
    bargv = [os.fsencode(a) for a in argv]
    benvp = [os.fsencode(e) for e in envp]
    if len(bargv) > MAX_ARG_STRINGS or len(benvp) > MAX_ARG_STRINGS:
        raise os_error(errno.E2BIG)
    image_file = open_exec(task, spath)  # alloc_bprm: the file is opened first
    mm = MemoryManager(kernel)
    mm.task = task
    saved = task.mm
    task.mm = mm  # get_arg_page grows the new stack under the caller's limits
    try:
        stack, p, argmin = build_stack(task, mm, os.fsencode(path), bargv, benvp)
    finally:
        task.mm = saved
    argc = max(len(bargv), 1)
    # exec_binprm: binfmt_script rewrites argv and restarts with the interpreter (5 rewrites)
    interp_name = os.fsencode(path)
    for _ in range(MAX_DEPTH):
        script = parse_script(image_file.inode.read(BINPRM_BUF_SIZE, 0).ljust(BINPRM_BUF_SIZE, b"\0"))
        if script is None:
            break
        i_name, i_arg = script
        p = remove_arg_zero(mm, p)
        for s in (interp_name, i_arg, i_name):
            if s is not None:
                p = copy_string(mm, p, argmin, s)
        argc += 1 + (i_arg is not None)
        interp_name = i_name
        if not i_name:  # open_exec(""): a kernel path walk of "" ends at the cwd, a directory
            raise os_error(errno.EACCES)
        image_file = open_exec(task, os.fsdecode(i_name))
    else:
        raise os_error(errno.ELOOP)
    prepared = prepare(task, image_file)
    # --- begin_new_exec: the point of no return ---
    old = task.mm
    task.mm = mm
    old.exit_mmap()
    for fd in [fd for fd, f in task.fds.items() if f.flags & os.O_CLOEXEC]:
        del task.fds[fd]
    task.dumpable = True
    try:
        load_elf_binary(task, prepared, stack, p, os.fsencode(path), argc, len(benvp))
    except OSError:
        kernel.exit_task(task, 11)
        raise ProcessGone(f"process {task.pid} was killed by SIGSEGV: exec failed after the point of no return") from None


__all__ = ["STACK_TOP", "do_execve", "open_exec", "setup_arg_pages"]
