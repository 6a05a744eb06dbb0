""":class:`SimProcess`: the api.md ``Process`` of a model process, delegating to the syscall modules.

Each memory-management call lives in its own module (one home per rule): ``sys_mmap`` (mmap, munmap,
brk), ``sys_mprotect``, ``sys_mremap``, ``sys_madvise``, ``sys_mincore``, ``sys_mlock``,
``sys_msync``, ``sys_process_vm``; files, signals, limits and credentials are in ``sys_task``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from vmkit.errors import ProcessGone, os_error
from vmkit.flags import caps_to_mask, mask_to_caps
from vmkit.process import Iov, Process
from vmkit.sim import procfs, readahead, sys_mmap
from vmkit.sim.frames import pool
from vmkit.sim.kernel import Task


def _check_fsize(task: Task, pos: int, end: int) -> int:
    """RLIMIT_FSIZE on a write or truncate reaching ``end`` from ``pos``: a write starting below the
    limit is cut short at it (``generic_write_check_limits``); one starting at or past it, or a
    truncate past it, raises SIGXFSZ and fails with EFBIG (mm/filemap.c, fs/attr.c
    ``inode_newsize_ok``): the signal is not modelled.  Returns the allowed end."""
    limit = task.rlimit_cur("RLIMIT_FSIZE")
    if end <= limit:
        return end
    if pos >= limit or pos == end:
        raise NotImplementedError("RLIMIT_FSIZE exceeded: SIGXFSZ (and its EFBIG) is not modelled")
    return limit


#: ``O_NOTIFICATION_PIPE`` (= O_EXCL): a watch-queue pipe.
O_NOTIFICATION_PIPE = 0x80


def _missing(what: str) -> NotImplementedError:
    return NotImplementedError(f"vmkit.sim does not implement {what} yet")


#: ``vmkit.native``'s ``pwrite``/``pread`` move the data through the child's scratch area and issue
#: one pwrite(2)/pread(2) per piece of this size (``vmkit.native._runtime.SCRATCH_SIZE``); the model
#: issues the same calls, because ext4 sizes the folios a write creates from its length, and
#: readahead sizes its window from each read's.
IO_PIECE = (1 << 20) - 4096


class SimProcess(Process):
    """A process of a :class:`vmkit.sim.Kernel`."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.pid = task.pid
        self.kernel = task.kernel

    def _live(self) -> Task:
        task = self.task
        if not task.alive:
            raise ProcessGone(f"process {task.pid} is gone (status {task.exit_status})")
        return task

    # --- memory-management system calls ---------------------------------------------------

    def mmap(self, addr: int | None, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0) -> int:
        return sys_mmap.sys_mmap(self._live(), addr or 0, length, prot, flags, fd, offset)

    def munmap(self, addr: int, length: int) -> None:
        sys_mmap.sys_munmap(self._live(), addr, length)

    def brk(self, addr: int) -> int:
        return sys_mmap.sys_brk(self._live(), addr)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        from vmkit.sim import sys_mprotect

        sys_mprotect.sys_mprotect(self._live(), addr, length, prot)

    def mremap(self, old_address: int, old_size: int, new_size: int, flags: int = 0,
               new_address: int | None = None) -> int:
        from vmkit.sim import sys_mremap

        return sys_mremap.sys_mremap(self._live(), old_address, old_size, new_size, flags,
                                     new_address or 0)

    def msync(self, addr: int, length: int, flags: int) -> None:
        from vmkit.sim import sys_msync

        sys_msync.sys_msync(self._live(), addr, length, flags)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        from vmkit.sim import sys_madvise

        sys_madvise.sys_madvise(self._live(), addr, length, advice)

    def mincore(self, addr: int, length: int) -> bytes:
        from vmkit.sim import sys_mincore

        return sys_mincore.sys_mincore(self._live(), addr, length)

    def mlock(self, addr: int, length: int) -> None:
        from vmkit.sim import sys_mlock

        sys_mlock.sys_mlock(self._live(), addr, length)

    def mlock2(self, addr: int, length: int, flags: int = 0) -> None:
        from vmkit.sim import sys_mlock

        sys_mlock.sys_mlock2(self._live(), addr, length, flags)

    def munlock(self, addr: int, length: int) -> None:
        from vmkit.sim import sys_mlock

        sys_mlock.sys_munlock(self._live(), addr, length)

    def mlockall(self, flags: int) -> None:
        from vmkit.sim import sys_mlock

        sys_mlock.sys_mlockall(self._live(), flags)

    def munlockall(self) -> None:
        from vmkit.sim import sys_mlock

        sys_mlock.sys_munlockall(self._live())

    def process_vm_readv(self, pid: int, local_iov: Iov, remote_iov: Iov, flags: int = 0) -> int:
        from vmkit.sim import sys_process_vm

        return sys_process_vm.sys_process_vm_readv(self._live(), pid, local_iov, remote_iov, flags)

    def process_vm_writev(self, pid: int, local_iov: Iov, remote_iov: Iov, flags: int = 0) -> int:
        from vmkit.sim import sys_process_vm

        return sys_process_vm.sys_process_vm_writev(self._live(), pid, local_iov, remote_iov, flags)

    def process_madvise(self, pidfd: int, iov: Iov, advice: int, flags: int = 0) -> int:
        from vmkit.sim import sys_process_vm

        return sys_process_vm.sys_process_madvise(self._live(), pidfd, iov, advice, flags)

    def process_mrelease(self, pidfd: int, flags: int = 0) -> None:
        from vmkit.sim import sys_process_vm

        sys_process_vm.sys_process_mrelease(self._live(), pidfd, flags)

    # --- CPU accesses --------------------------------------------------------------------------

    def read(self, addr: int, n: int) -> bytes:
        if n <= 0:
            return b""
        out = bytearray(n)
        view = pool().view

        def visit(frame: int, offset: int, done: int, take: int) -> None:
            start = frame * 4096 + offset
            out[done:done + take] = view[start:start + take]

        self._live().mm.access(addr, n, False, visit)
        return bytes(out)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if not data:
            return
        view = pool().view

        def visit(frame: int, offset: int, done: int, take: int) -> None:
            start = frame * 4096 + offset
            view[start:start + take] = data[done:done + take]

        self._live().mm.access(addr, len(data), True, visit)

    # --- introspection ---------------------------------------------------------------------------

    def maps(self) -> str:
        return procfs.maps(self._live())

    def smaps(self) -> str:
        return procfs.smaps(self._live())

    def status(self) -> dict[str, str]:
        return procfs.status(self._live())

    def fork(self) -> SimProcess:
        return SimProcess(self.kernel.fork(self._live()))

    def execve(self, path: str | bytes, argv: Sequence[str | bytes], envp: Sequence[str | bytes]) -> None:
        """execve(2): this process's address space becomes ``path``'s at its first instruction
        (:func:`vmkit.sim.exec.do_execve`); fds without O_CLOEXEC, credentials and limits stay.
        Raises OSError with the kernel's errno."""
        from vmkit.sim.exec import do_execve

        do_execve(self._live(), path, argv, envp)

    # --- files -------------------------------------------------------------------------------------

    def _privileged(self, task: Task) -> bool:
        return task.capable("CAP_DAC_OVERRIDE")

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        """``do_sys_openat2``: the descriptor is reserved (EMFILE) before the path is looked up."""
        task = self._live()
        task.unused_fd()
        file = self.kernel.fs.open(path, flags, mode, task.cred.euid, self._privileged(task))
        return task.install_fd(file)

    def close(self, fd: int) -> None:
        task = self._live()
        task.file(fd)
        del task.fds[fd]

    def ftruncate(self, fd: int, length: int) -> None:
        task = self._live()
        file = task.file(fd)
        if length < 0:
            raise os_error(errno.EINVAL)
        if file.inode.kind == "pidfd" and file.writable:
            raise os_error(errno.EOPNOTSUPP)  # a regular pidfs inode: pidfs_setattr refuses
        if file.inode.kind != "reg" or not file.writable:
            raise os_error(errno.EINVAL if file.inode.kind != "reg" else errno.EINVAL)
        if length > file.inode.size:  # inode_newsize_ok checks growth only
            _check_fsize(task, length, length)
        if length & (file.inode.huge_size - 1) and file.inode.huge_size:
            raise os_error(errno.EINVAL)  # hugetlbfs_setattr: a size in whole huge pages
        self.kernel.fs.truncate(file.inode, length)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        """``ksys_pread64``: a negative offset is EINVAL before the fd is even looked up; a file
        without positioned reads (a pipe) is ESPIPE before its access mode is checked."""
        if offset < 0:
            raise os_error(errno.EINVAL)
        file = self._live().file(fd)
        if file.inode.kind == "pipe":
            raise os_error(errno.ESPIPE)
        if not file.readable:
            raise os_error(errno.EBADF)
        if file.inode.kind == "dir":
            raise os_error(errno.EISDIR)
        if file.inode.kind == "pidfd":
            raise os_error(errno.EINVAL)  # pidfs has no read_iter: !FMODE_CAN_READ (vfs_read)
        inode = file.inode
        out = bytearray()
        while True:  # the same pread(2) calls as vmkit.native: readahead follows each call
            want = min(n - len(out), IO_PIECE)
            if inode.kind == "reg" and inode.mount.has_disk:
                got = readahead.filemap_read(file, want, offset + len(out), self.kernel.read_ahead_kb // 4)
            else:  # shmem (holes read without allocating), devices, hugetlbfs: Inode.read
                got = inode.read(want, offset + len(out))
            out += got
            if len(got) < want or len(out) >= n:
                return bytes(out)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        """``ksys_pwrite64``: the checks in pread's order (EINVAL, EBADF, ESPIPE, then access)."""
        if offset < 0:
            raise os_error(errno.EINVAL)
        task = self._live()
        file = task.file(fd)
        if file.inode.kind == "pipe":
            raise os_error(errno.ESPIPE)
        if not file.writable:
            raise os_error(errno.EBADF)
        if file.inode.huge_size or file.inode.kind == "pidfd":
            raise os_error(errno.EINVAL)  # hugetlbfs and pidfs have no write_iter: !FMODE_CAN_WRITE (vfs_write)
        data = bytes(data)
        if data and file.inode.kind == "reg":
            data = data[:_check_fsize(task, offset, offset + len(data)) - offset]
        done = 0
        while True:  # the same pwrite(2) calls as vmkit.native: folio sizes follow each call
            piece = data[done:done + IO_PIECE]
            done += file.inode.write(piece, offset + done)
            if done >= len(data):
                return done

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        self.kernel.fs.mkdir(path, mode, self._live().cred.euid)

    def unlink(self, path: str) -> None:
        self._live()
        self.kernel.fs.unlink(path)

    def memfd_create(self, name: str, flags: int = 0) -> int:
        """memfd_create(2) (mm/memfd.c): EINVAL for unknown flags (MFD_HUGETLB also allows a page
        size in bits 26-31) and for MFD_EXEC with MFD_NOEXEC_SEAL; the descriptor is allocated
        (EMFILE) before ``hugetlb_file_setup`` looks up the page size (ENODEV for one this machine
        has no hstate for)."""
        from vmkit.sim.fs import OpenFile
        from vmkit.sim.sys_mmap import HUGE_SIZES

        task = self._live()
        flags &= 0xFFFFFFFF
        if flags & ~(0x1F | (0x3F << 26 if flags & 0x4 else 0)):
            raise os_error(errno.EINVAL)
        if flags & 0x10 and flags & 0x8:
            raise os_error(errno.EINVAL)
        fd = task.install_fd(OpenFile(self.kernel.fs.memfd(name, task.cred.euid), 2))
        if flags & 0x4:
            huge_size = HUGE_SIZES.get(flags >> 26)
            if huge_size is None:
                del task.fds[fd]
                raise os_error(errno.ENODEV)
            task.fds[fd] = OpenFile(self.kernel.fs.hugetlb_memfd(name, huge_size, task.cred.euid), 2)
        return fd

    def pipe(self, flags: int = 0) -> tuple[int, int]:
        """``do_pipe2``: unknown flags EINVAL, O_NOTIFICATION_PIPE ENOPKG (no CONFIG_WATCH_QUEUE on
        our machines), then two descriptors (EMFILE if the second is not free, the first given
        back); both ends share one pipefs inode (fs/pipe.c)."""
        from vmkit.sim.fs import OpenFile

        task = self._live()
        if flags & ~(os.O_CLOEXEC | os.O_NONBLOCK | os.O_DIRECT | O_NOTIFICATION_PIPE):
            raise os_error(errno.EINVAL)
        if flags & O_NOTIFICATION_PIPE:
            raise os_error(errno.ENOPKG)
        inode = self.kernel.fs.pipe()
        read_end = task.install_fd(OpenFile(inode, os.O_RDONLY | (flags & os.O_NONBLOCK)))
        try:
            write_end = task.install_fd(OpenFile(inode, os.O_WRONLY | (flags & os.O_NONBLOCK)))
        except OSError:
            del task.fds[read_end]
            raise
        return read_end, write_end

    def pidfd_open(self, pid: int) -> int:
        from vmkit.sim.fs import OpenFile

        task = self._live()
        target = self.kernel.find_task(pid)
        # pidfd_prepare opens the pidfs file O_RDWR (kernel/pid.c); on 6.18 its inode is S_IFREG
        return task.install_fd(OpenFile(self.kernel.fs.pidfd(target), os.O_RDWR))

    # --- signals, limits, credentials ---------------------------------------------------------------

    def kill(self, sig: int) -> None:
        self.kernel.signal(self._live(), sig)

    def wait(self) -> int:
        return self.kernel.reap(self.task)

    def getrlimit(self, res: int) -> tuple[int, int]:
        """prlimit64(0, res, NULL, &old) (kernel/sys.c ``do_prlimit``): EINVAL for a resource at or
        past RLIM_NLIMITS; RLIM_INFINITY reads as -1."""
        from vmkit.sim.kernel import _RLIMIT_NAMES, RLIM_INFINITY

        task = self._live()
        name = _RLIMIT_NAMES.get(res)
        if name is None:
            raise os_error(errno.EINVAL)
        soft, hard = task.rlimits[name]
        return (-1 if soft == RLIM_INFINITY else soft, -1 if hard == RLIM_INFINITY else hard)

    def setrlimit(self, res: int, limits: tuple[int, int]) -> None:
        """prlimit64(0, res, &new, NULL) (kernel/sys.c ``do_prlimit``), checks in its order: EINVAL
        for an unknown resource or soft > hard, EPERM for a hard RLIMIT_NOFILE above fs.nr_open,
        EPERM for raising the hard limit without CAP_SYS_RESOURCE.  Every resource is stored; the
        model acts on MEMLOCK, AS, DATA and STACK (memory), NOFILE (EMFILE), NPROC (fork EAGAIN),
        FSIZE and CORE (NotImplementedError where they would act).  RLIMIT_CPU is stored only: a
        model process consumes no CPU time, so it never reaches the limit (no SIGXCPU)."""
        from vmkit.sim.kernel import _RLIMIT_NAMES

        task = self._live()
        name = _RLIMIT_NAMES.get(res)
        if name is None:
            raise os_error(errno.EINVAL)
        soft, hard = (v & ((1 << 64) - 1) for v in limits)
        if soft > hard:
            raise os_error(errno.EINVAL)
        if name == "RLIMIT_NOFILE" and hard > self.kernel.nr_open:
            raise os_error(errno.EPERM)
        if hard > task.rlimits[name][1] and not task.capable("CAP_SYS_RESOURCE"):
            raise os_error(errno.EPERM)
        task.rlimits[name] = [soft, hard]

    def setresuid(self, r: int, e: int, s: int) -> None:
        """setresuid(2) with the capability rules of ``cap_emulate_setxuid`` (capabilities(7))."""
        task = self._live()
        cred = task.cred
        old = (cred.ruid, cred.euid, cred.suid)
        new = tuple(o if v in (-1, 0xFFFFFFFF) else v for v, o in zip((r, e, s), old))
        if not task.capable("CAP_SETUID") and any(v not in old for v, given in zip(new, (r, e, s))
                                                  if given not in (-1, 0xFFFFFFFF)):
            raise os_error(errno.EPERM)
        cred.ruid, cred.euid, cred.suid = new
        before = cred.effective | cred.permitted
        if 0 in old and 0 not in new:
            cred.effective = cred.permitted = frozenset()
        elif old[1] == 0 and new[1] != 0:
            cred.effective = frozenset()
        elif old[1] != 0 and new[1] == 0:
            cred.effective = cred.permitted
        # commit_creds: a changed euid (fsuid follows it) or gained capabilities drop dumpability
        if new[1] != old[1] or not (cred.effective | cred.permitted) <= before:
            task.dumpable = False

    def setresgid(self, r: int, e: int, s: int) -> None:
        task = self._live()
        cred = task.cred
        old = (cred.rgid, cred.egid, cred.sgid)
        new = tuple(o if v in (-1, 0xFFFFFFFF) else v for v, o in zip((r, e, s), old))
        if not task.capable("CAP_SETGID") and any(v not in old for v, given in zip(new, (r, e, s))
                                                  if given not in (-1, 0xFFFFFFFF)):
            raise os_error(errno.EPERM)
        cred.rgid, cred.egid, cred.sgid = new
        if new[1] != old[1]:
            task.dumpable = False

    @property
    def capabilities(self) -> frozenset[str]:
        return self._live().cred.effective

    @capabilities.setter
    def capabilities(self, names: set[str] | frozenset[str]) -> None:
        task = self._live()
        wanted = mask_to_caps(caps_to_mask(set(names)))
        if not wanted <= task.cred.permitted:
            raise os_error(errno.EPERM)
        task.cred.effective = task.cred.permitted = wanted

    @property
    def dumpable(self) -> bool:
        return self._live().dumpable

    @dumpable.setter
    def dumpable(self, value: bool) -> None:
        self._live().dumpable = bool(value)

    # --- life cycle ------------------------------------------------------------------------------------

    def terminate(self) -> None:
        task = self.task
        if task.reaped:
            return
        if task.alive:
            self.kernel.exit_task(task, 9)
        self.kernel.reap(task)

    def __repr__(self) -> str:
        return f"<vmkit.sim process {self.pid} {'alive' if self.task.alive else 'dead'}>"


def _checked(method):  # type: ignore[no-untyped-def]
    """Runs the invariant checker after the call when the kernel asks for it."""
    import functools

    from vmkit.sim.invariants import check_counters, check_kernel

    @functools.wraps(method)
    def call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return method(self, *args, **kwargs)
        finally:
            kernel = self.kernel
            if kernel.check_invariants:
                # The full O(VMAs) check after every call while address spaces are small (fewer
                # than 1024 VMAs in all); once they are large, the O(1) counter checks after every
                # call and the full check after every (VMAs / 8)th, so that a test filling
                # max_map_count stays linear (the walk costs about 8 VMAs' worth per call).
                tasks = kernel.tasks.values()
                vmas = sum(len(task.mm.vmas) for task in tasks)
                kernel.calls_unchecked = getattr(kernel, "calls_unchecked", 0) + 1
                if vmas < 1024 or kernel.calls_unchecked >= vmas >> 3:
                    kernel.calls_unchecked = 0
                    check_kernel(kernel)
                else:
                    for task in tasks:
                        check_counters(task.mm)

    return call


for _name, _member in list(vars(SimProcess).items()):
    if not _name.startswith("_") and callable(_member):
        setattr(SimProcess, _name, _checked(_member))
