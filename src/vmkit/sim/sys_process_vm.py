"""Calls on another process's memory: process_vm_readv/writev (mm/process_vm_access.c),
process_madvise (mm/madvise.c) and process_mrelease (mm/oom_kill.c).

Shared rules:

* Access checks are ``mm_access`` (kernel/fork.c): a task without an mm (a zombie) is ESRCH; another
  mm needs ``ptrace_may_access`` (kernel/ptrace.c ``__ptrace_may_access`` + commoncap's
  ``cap_ptrace_access_check``; Yama is not built on our machines), else EACCES.
* pidfds (``pidfd_get_task``, kernel/pid.c): ``PIDFD_SELF_THREAD`` (-10000) and
  ``PIDFD_SELF_THREAD_GROUP`` (-10001) name the caller; any other fd must be an open pidfd (else
  EBADF) whose process has not been reaped (else ESRCH).
* iovecs (``import_iovec``/``iovec_from_user``, lib/iov_iter.c): more than UIO_MAXIOV (1024) →
  EINVAL, a length that is negative as ``ssize_t`` → EINVAL, a local range beyond the user address
  space (``access_ok``) → EFAULT; the total is capped at MAX_RW_COUNT.
* process_vm_readv/writev move bytes until the first remote page that cannot be pinned (unmapped,
  PROT_NONE or read-only for writev, VM_IO/VM_PFNMAP, a guard page, SIGBUS past EOF; stacks are not
  grown) or the first local byte that faults; later elements are not tried.  The result is the
  bytes copied, EFAULT only when nothing was.  Remote pages are faulted in like GUP does (a write
  fault for writev), a whole batch of up to 1024 pages before any byte is copied.
* Not modelled: FOLL_PIN's unsharing of COW-shared anonymous pages on a read pin (it changes no
  byte a process can read).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from vmkit.errors import BusError, SegmentationFault, os_error
from vmkit.flags import PAGE_SIZE
from vmkit.process import Iov
from vmkit.sim.frames import pool
from vmkit.sim.vmflags import VM_SHARED

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task
    from vmkit.sim.mm import MemoryManager
    from vmkit.sim.vma import Vma

MASK64 = (1 << 64) - 1
UIO_MAXIOV = 1024
#: ``MAX_RW_COUNT`` = INT_MAX & PAGE_MASK.
MAX_RW_COUNT = 0x7FFFF000
#: x86-64 ``USER_PTR_MAX`` = TASK_SIZE_MAX (4-level paging, no LAM).
USER_PTR_MAX = (1 << 47) - PAGE_SIZE
#: ``PVM_MAX_USER_PAGES``: pages pinned per batch (2 pages of struct page pointers).
PVM_MAX_USER_PAGES = 2 * PAGE_SIZE // 8
PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP = -10000, -10001
MADV_WILLNEED, MADV_COLD, MADV_PAGEOUT, MADV_COLLAPSE = 3, 20, 21, 25


def _c_int(value: int) -> int:
    """A value passed as a C ``int``/``pid_t``: the low 32 bits, signed."""
    return ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


# --- access checks --------------------------------------------------------------------------------

def ptrace_may_access(caller: Task, target: Task, fscreds: bool) -> bool:
    """``__ptrace_may_access`` (kernel/ptrace.c) then ``cap_ptrace_access_check``
    (security/commoncap.c).  The caller's real ids (PTRACE_MODE_REALCREDS) or fs ids
    (PTRACE_MODE_FSCREDS; the model's fsuid/fsgid follow euid/egid) must equal all of the target's
    real, effective and saved ids, or the caller needs CAP_SYS_PTRACE; a non-dumpable target also
    needs CAP_SYS_PTRACE; the target's permitted capabilities must be a subset of the caller's
    (effective for FSCREDS, permitted for REALCREDS) or the caller needs CAP_SYS_PTRACE."""
    if target is caller:  # same_thread_group
        return True
    cred, tcred = caller.cred, target.cred
    uid, gid = (cred.euid, cred.egid) if fscreds else (cred.ruid, cred.rgid)
    has_ptrace = caller.capable("CAP_SYS_PTRACE")
    same_ids = (uid == tcred.euid == tcred.suid == tcred.ruid
                and gid == tcred.egid == tcred.sgid == tcred.rgid)
    if not same_ids and not has_ptrace:
        return False
    if target.alive and not target.dumpable and not has_ptrace:
        return False
    caller_caps = cred.effective if fscreds else cred.permitted
    return tcred.permitted <= caller_caps or has_ptrace


def mm_access(caller: Task, target: Task, fscreds: bool) -> MemoryManager:
    """``mm_access`` (kernel/fork.c): the target's mm; ESRCH when it has none (it exited: the
    model releases the mm at death), EACCES when another mm fails ``ptrace_may_access``."""
    if not target.alive:
        raise os_error(errno.ESRCH)
    if target.mm is not caller.mm and not ptrace_may_access(caller, target, fscreds):
        raise os_error(errno.EACCES)
    return target.mm


def pidfd_get_task(caller: Task, pidfd: int) -> Task:
    """``pidfd_get_task`` (kernel/pid.c, 6.18 with the PIDFD_SELF_* sentinels): EBADF for a closed
    descriptor or one that is not a pidfd (``pidfd_pid``), ESRCH once the process was reaped
    (``get_pid_task`` finds no task; a zombie is still found)."""
    pidfd = _c_int(pidfd)
    if pidfd in (PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP):
        return caller
    file = caller.fds.get(pidfd)
    if file is None or file.inode.kind != "pidfd":
        raise os_error(errno.EBADF)
    target: Task = file.inode.target  # type: ignore[assignment]
    if target.reaped:
        raise os_error(errno.ESRCH)
    return target


# --- iovecs ---------------------------------------------------------------------------------------

def _access_ok(addr: int, length: int) -> bool:
    """x86-64 ``__access_ok``: the range ends within the user address space, without wrapping."""
    end = (addr + length) & MASK64
    return end <= USER_PTR_MAX and end >= addr


def iovec_from_user(iov: Iov) -> list[tuple[int, int]]:
    """``iovec_from_user``: more than UIO_MAXIOV entries or a negative ``ssize_t`` length: EINVAL."""
    if len(iov) > UIO_MAXIOV:
        raise os_error(errno.EINVAL)
    out = []
    for base, length in iov:
        base, length = base & MASK64, length & MASK64
        if length >> 63:
            raise os_error(errno.EINVAL)
        out.append((base, length))
    return out


def import_iovec(iov: Iov) -> list[tuple[int, int]]:
    """``import_iovec`` (lib/iov_iter.c): ``iovec_from_user``, then ``access_ok`` per entry (EFAULT)
    and the MAX_RW_COUNT cap on the total (a single entry is capped before its access_ok)."""
    vec = iovec_from_user(iov)
    if len(vec) == 1:
        base, length = vec[0]
        length = min(length, MAX_RW_COUNT)
        if not _access_ok(base, length):
            raise os_error(errno.EFAULT)
        return [(base, length)]
    total = 0
    out = []
    for base, length in vec:
        if not _access_ok(base, length):
            raise os_error(errno.EFAULT)
        length = min(length, MAX_RW_COUNT - total)
        total += length
        out.append((base, length))
    return out


class _LocalIter:
    """The local side of a transfer (an ``iov_iter`` over the caller's iovecs): copies to or from
    the caller's memory as ``copy_to_user``/``copy_from_user`` do, stopping at the first byte that
    faults."""

    def __init__(self, mm: MemoryManager, vec: list[tuple[int, int]]) -> None:
        self.mm = mm
        self.vec = [(b, n) for b, n in vec if n]
        self.seg = 0
        self.off = 0
        self.count = sum(n for _, n in self.vec)

    def copy(self, frame: int, offset: int, n: int, to_user: bool) -> int:
        """Moves up to ``n`` bytes between frame[offset:] and the iterator; returns bytes moved."""
        view = pool().view
        done_total = 0
        while n and self.count:
            base, length = self.vec[self.seg]
            addr = base + self.off
            take = min(n, length - self.off)
            src = frame * PAGE_SIZE + offset + done_total
            moved = 0

            def visit(lframe: int, loff: int, done: int, part: int) -> None:
                nonlocal moved
                at = lframe * PAGE_SIZE + loff
                if to_user:
                    view[at:at + part] = view[src + done:src + done + part]
                else:
                    view[src + done:src + done + part] = view[at:at + part]
                moved = done + part

            try:
                self.mm.access(addr, take, to_user, visit)
            except (SegmentationFault, BusError):
                pass
            self._advance(moved)
            done_total += moved
            n -= moved
            if moved < take:
                break
        return done_total

    def _advance(self, n: int) -> None:
        self.count -= n
        self.off += n
        while self.seg < len(self.vec) and self.off >= self.vec[self.seg][1]:
            self.off -= self.vec[self.seg][1]
            self.seg += 1


# --- process_vm_readv / process_vm_writev ----------------------------------------------------------

def _rw_single_vec(mm: MemoryManager, addr: int, length: int, it: _LocalIter, vm_write: bool) -> int:
    """``process_vm_rw_single_vec``: pins the remote pages in batches (``pin_user_pages_remote``,
    FOLL_WRITE for writev, no FOLL_FORCE, no stack growth) and copies; EFAULT when a batch pins
    nothing or the local side faults with bytes left.  Returns 0 or the errno."""
    if length == 0:
        return 0
    pa = addr & ~(PAGE_SIZE - 1)
    start_offset = addr - pa
    nr_pages = (addr + length - 1) // PAGE_SIZE - addr // PAGE_SIZE + 1
    while nr_pages and it.count:
        pages, _ = mm.get_user_pages(pa, min(nr_pages, PVM_MAX_USER_PAGES), vm_write)
        if not pages:
            return errno.EFAULT
        nbytes = min(len(pages) * PAGE_SIZE - start_offset, length)
        left = nbytes
        offset = start_offset
        for i, (vma, frame) in enumerate(pages):  # process_vm_rw_pages
            if not left or not it.count:
                break
            copy = min(PAGE_SIZE - offset, left)
            copied = it.copy(frame, offset, copy, to_user=not vm_write)
            if vm_write and copied:
                _set_page_dirty(vma, pa + i * PAGE_SIZE, frame)
            left -= copied
            if copied < copy and it.count:
                return errno.EFAULT
            offset = 0
        length -= nbytes
        start_offset = 0
        nr_pages -= len(pages)
        pa += len(pages) * PAGE_SIZE
    return 0


def _set_page_dirty(vma: Vma, addr: int, frame: int) -> None:
    """``unpin_user_pages_dirty_lock(..., make_dirty)``: a written page is dirty (a shared file page
    in its page cache too)."""
    pool().dirty[frame] = 1
    if vma.file is not None and vma.flags & VM_SHARED and not vma.anonymous:
        vma.file.inode.mark_dirty(vma.pgoff_at(addr))


def process_vm_rw(task: Task, pid: int, local_iov: Iov, remote_iov: Iov, flags: int,
                  vm_write: bool) -> int:
    """``process_vm_rw`` + ``process_vm_rw_core`` (mm/process_vm_access.c): EINVAL for flags; the
    local iovec (EINVAL/EFAULT), 0 if it is empty; the remote iovec (EINVAL), 0 if it covers no page;
    ESRCH for no such pid; ``mm_access(PTRACE_MODE_ATTACH_REALCREDS)`` with EACCES turned into
    EPERM; then remote element by element until the first error.  Returns the bytes copied, the
    error only when nothing was copied."""
    if flags & MASK64:
        raise os_error(errno.EINVAL)
    local = import_iovec(local_iov)
    it = _LocalIter(task.mm, local)
    if not it.count:
        return 0
    remote = iovec_from_user(remote_iov)
    nr_pages = max((((b + n - 1) >> 12) - (b >> 12) + 1 for b, n in remote if n), default=0)
    if nr_pages == 0:
        return 0
    target = task.kernel.find_task(_c_int(pid))  # find_get_task_by_vpid: ESRCH
    try:
        mm = mm_access(task, target, fscreds=False)
    except OSError as e:
        raise os_error(errno.EPERM if e.errno == errno.EACCES else e.errno) from None
    total = it.count
    rc = 0
    for base, length in remote:
        if not it.count or rc:
            break
        rc = _rw_single_vec(mm, base, length, it, vm_write)
    copied = total - it.count
    if copied:
        return copied
    if rc:
        raise os_error(rc)
    return 0


def sys_process_vm_readv(task: Task, pid: int, local_iov: Iov, remote_iov: Iov, flags: int) -> int:
    """process_vm_readv(2): ``process_vm_rw(..., vm_write=0)``."""
    return process_vm_rw(task, pid, local_iov, remote_iov, flags, False)


def sys_process_vm_writev(task: Task, pid: int, local_iov: Iov, remote_iov: Iov, flags: int) -> int:
    """process_vm_writev(2): ``process_vm_rw(..., vm_write=1)``."""
    return process_vm_rw(task, pid, local_iov, remote_iov, flags, True)


# --- process_madvise ------------------------------------------------------------------------------

def process_madvise_remote_valid(advice: int) -> bool:
    """``process_madvise_remote_valid``: another process's mm takes only non-destructive hints."""
    return advice in (MADV_COLD, MADV_PAGEOUT, MADV_WILLNEED, MADV_COLLAPSE)


def sys_process_madvise(task: Task, pidfd: int, iov: Iov, advice: int, flags: int) -> int:
    """process_madvise(2), 6.18 order (mm/madvise.c): flags (EINVAL); ``import_iovec``;
    ``pidfd_get_task`` (EBADF, ESRCH); ``mm_access(PTRACE_MODE_READ_FSCREDS)`` (ESRCH, EACCES);
    for another mm, advice outside COLD/PAGEOUT/WILLNEED/COLLAPSE → EINVAL, then no CAP_SYS_NICE →
    EPERM; then ``vector_madvise``.  The caller's own mm takes any madvise advice."""
    if flags & 0xFFFFFFFF:
        raise os_error(errno.EINVAL)
    vec = import_iovec(iov)
    target = pidfd_get_task(task, pidfd)
    mm = mm_access(task, target, fscreds=True)
    remote = mm is not task.mm
    advice = _c_int(advice)
    if remote and not process_madvise_remote_valid(advice):
        raise os_error(errno.EINVAL)
    if remote and not task.capable("CAP_SYS_NICE"):
        raise os_error(errno.EPERM)
    return vector_madvise(task, mm, vec, advice)


def vector_madvise(task: Task, mm: MemoryManager, vec: list[tuple[int, int]], advice: int) -> int:
    """``vector_madvise``: each iovec element through ``do_madvise`` (the madvise(2) code, with the
    caller's credentials on ``mm``), stopping at the first error.  Returns the bytes advised, the
    error only when none were.

    The elements are walked as the iov_iter walks them: the loop runs while bytes remain, and
    advancing past an element also skips the zero-length ones after it, so only a zero-length
    *first* element is ever passed to ``do_madvise`` (where it is still checked, e.g. alignment)."""
    total = sum(n for _, n in vec)
    if not total:
        return 0
    steps = [(b, n) for i, (b, n) in enumerate(vec) if n or i == 0]
    done = 0
    for base, length in steps:
        try:
            _madvise_range(task, mm, base, length, advice)
        except OSError as e:
            if done:
                return done
            raise os_error(e.errno) from None
        done += length
    return done


def _madvise_range(task: Task, mm: MemoryManager, start: int, length: int, advice: int) -> None:
    """One madvise range of ``mm``: ``do_madvise`` of :mod:`vmkit.sim.sys_madvise` (imported lazily:
    it is written alongside this module)."""
    try:
        from vmkit.sim import sys_madvise
    except ImportError:
        raise NotImplementedError(
            f"vmkit.sim does not model madvise advice {advice} yet (process_madvise needs "
            "vmkit.sim.sys_madvise)") from None
    do_madvise = getattr(sys_madvise, "do_madvise", None)
    if do_madvise is None:
        raise NotImplementedError(
            f"vmkit.sim does not model madvise advice {advice} yet (no sys_madvise.do_madvise)")
    do_madvise(task, mm, start, length, advice)


# --- process_mrelease -----------------------------------------------------------------------------

def sys_process_mrelease(task: Task, pidfd: int, flags: int) -> None:
    """process_mrelease(2) (mm/oom_kill.c): flags → EINVAL; ``pidfd_get_task`` (EBADF, ESRCH); no
    thread with an mm (``find_lock_task_mm``) → ESRCH; a process that is not dying
    (``task_will_free_mem`` false) → EINVAL.  No permission check beyond holding the pidfd.

    Model choice: a SIGKILL in the model kills synchronously — ``Kernel.exit_task`` releases the mm
    (``exit_mmap``) before ``kill`` returns — so the kernel's "killed, not yet reaped by exit"
    window, where process_mrelease returns 0 after reaping the mm itself, never exists: a killed
    process is always a zombie without an mm and the call deterministically gives ESRCH (the real
    kernel gives 0 or ESRCH depending on the race, kernel-rules.md §16).  A live process is never
    dying, so it is always EINVAL (MMF_OOM_SKIP cannot be set without a dying process either).
    """
    if flags & 0xFFFFFFFF:
        raise os_error(errno.EINVAL)
    target = pidfd_get_task(task, pidfd)
    if not target.alive:
        raise os_error(errno.ESRCH)
    raise os_error(errno.EINVAL)


__all__ = ["mm_access", "pidfd_get_task", "process_vm_rw", "ptrace_may_access",
           "sys_process_madvise", "sys_process_mrelease", "sys_process_vm_readv",
           "sys_process_vm_writev"]
