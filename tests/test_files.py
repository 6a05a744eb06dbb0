"""Files, descriptors and file mappings (machine-facts §3.1, §3.3, §14; kernel-rules §18, §19).

All file operations run inside the process (its own descriptors).  Coherence tests run on ext4
(/tmp) and on tmpfs (/dev/shm).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW
from helpers import vma_at, vmas_in

O_RDWR_CREAT = os.O_RDWR | os.O_CREAT
SHARED_FIXED = vmkit.MAP_SHARED | vmkit.MAP_FIXED
PRIVATE_FIXED = vmkit.MAP_PRIVATE | vmkit.MAP_FIXED


@pytest.fixture(params=["ext4", "tmpfs"])
def any_path(request: pytest.FixtureRequest) -> str:
    """A fresh path on ext4 (/tmp) or tmpfs (/dev/shm)."""
    return str(request.getfixturevalue("file_path" if request.param == "ext4" else "shm_path"))


@pytest.fixture
def dir_path(file_path: str) -> Iterator[str]:
    """A fresh path for a directory, removed afterwards if it exists on the host."""
    yield file_path
    try:
        os.rmdir(file_path)
    except (FileNotFoundError, NotADirectoryError):
        pass


def sized_file(p: Process, path: str, pages: int, fill: bytes = b"") -> int:
    """Creates ``path`` with ``pages`` pages (``fill`` repeated, or zeros); returns the fd."""
    fd = p.open(path, O_RDWR_CREAT)
    if fill:
        assert p.pwrite(fd, fill * (pages * PAGE // len(fill)), 0) == pages * PAGE
    else:
        p.ftruncate(fd, pages * PAGE)
    return fd


class TestDescriptors:
    def test_pwrite_pread_roundtrip(self, proc: Process, any_path: str) -> None:
        """pwrite then pread at an offset returns the bytes; a hole before them reads zero (fs/read_write.c ksys_pwrite64)."""
        fd = proc.open(any_path, O_RDWR_CREAT)
        assert fd == 3
        assert proc.pwrite(fd, b"hello world", 100) == 11
        assert proc.pread(fd, 11, 100) == b"hello world"
        assert proc.pread(fd, 1000, 0) == bytes(100) + b"hello world"
        assert proc.pread(fd, 10, 111) == b""

    def test_ftruncate_grows_with_zeros_and_shrinks(self, proc: Process, any_path: str) -> None:
        """ftruncate sets the size: growth reads as zeros, shrinking discards the tail (fs/open.c do_truncate)."""
        fd = proc.open(any_path, O_RDWR_CREAT)
        proc.pwrite(fd, b"abcdef", 0)
        proc.ftruncate(fd, 3 * PAGE)
        assert proc.pread(fd, 4 * PAGE, 0) == b"abcdef" + bytes(3 * PAGE - 6)
        proc.ftruncate(fd, 3)
        assert proc.pread(fd, PAGE, 0) == b"abc"
        proc.ftruncate(fd, 6)
        assert proc.pread(fd, PAGE, 0) == b"abc\0\0\0"

    def test_ftruncate_negative_is_einval(self, proc: Process, file_path: str) -> None:
        """A negative length is EINVAL (fs/open.c do_sys_ftruncate)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        with pytest.raises(OSError) as e:
            proc.ftruncate(fd, -1)
        assert e.value.errno == errno.EINVAL

    def test_ftruncate_read_only_fd_is_einval(self, proc: Process, file_path: str) -> None:
        """ftruncate needs an fd open for writing: EINVAL otherwise (fs/open.c do_sys_ftruncate)."""
        proc.close(proc.open(file_path, O_RDWR_CREAT))
        fd = proc.open(file_path, os.O_RDONLY)
        with pytest.raises(OSError) as e:
            proc.ftruncate(fd, PAGE)
        assert e.value.errno == errno.EINVAL

    def test_open_nonexistent_is_enoent(self, proc: Process, file_path: str) -> None:
        """open without O_CREAT of a missing path: ENOENT (fs/namei.c path_openat)."""
        with pytest.raises(OSError) as e:
            proc.open(file_path, os.O_RDWR)
        assert e.value.errno == errno.ENOENT

    def test_open_excl_existing_is_eexist(self, proc: Process, file_path: str) -> None:
        """O_CREAT|O_EXCL on an existing file: EEXIST (fs/namei.c open_last_lookups)."""
        proc.close(proc.open(file_path, O_RDWR_CREAT))
        with pytest.raises(OSError) as e:
            proc.open(file_path, O_RDWR_CREAT | os.O_EXCL)
        assert e.value.errno == errno.EEXIST

    @pytest.mark.parametrize("fd", [-1, 1000, 3])
    def test_close_bad_fd_is_ebadf(self, proc: Process, fd: int) -> None:
        """Closing a descriptor that is not open: EBADF (fs/file.c close_fd)."""
        with pytest.raises(OSError) as e:
            proc.close(fd)
        assert e.value.errno == errno.EBADF

    def test_double_close_is_ebadf(self, proc: Process, file_path: str) -> None:
        """The second close of the same fd: EBADF (fs/file.c close_fd)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.close(fd)
        with pytest.raises(OSError) as e:
            proc.close(fd)
        assert e.value.errno == errno.EBADF

    def test_lowest_free_fd_is_reused(self, proc: Process, file_path: str) -> None:
        """open returns the lowest free descriptor (fs/file.c alloc_fd)."""
        a = proc.open(file_path, O_RDWR_CREAT)
        b = proc.open(file_path, os.O_RDONLY)
        assert (a, b) == (3, 4)
        proc.close(a)
        assert proc.open(file_path, os.O_RDONLY) == 3

    def test_unlinked_file_stays_usable_through_its_fd(self, proc: Process, file_path: str) -> None:
        """unlink removes the name; the open file lives on (fs/namei.c do_unlinkat)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.unlink(file_path)
        assert proc.pwrite(fd, b"orphan", 0) == 6
        assert proc.pread(fd, 6, 0) == b"orphan"
        with pytest.raises(OSError) as e:
            proc.open(file_path, os.O_RDWR)
        assert e.value.errno == errno.ENOENT
        with pytest.raises(OSError) as e:
            proc.unlink(file_path)
        assert e.value.errno == errno.ENOENT


class TestDirectories:
    def test_mmap_of_a_directory_is_enodev(self, proc: Process, dir_path: str) -> None:
        """A directory has no mmap file operation: ENODEV (mm/mmap.c do_mmap)."""
        proc.mkdir(dir_path)
        fd = proc.open(dir_path, os.O_RDONLY | os.O_DIRECTORY)
        for flags in (vmkit.MAP_SHARED, vmkit.MAP_PRIVATE):
            with pytest.raises(OSError) as e:
                proc.mmap(None, PAGE, vmkit.PROT_READ, flags, fd, 0)
            assert e.value.errno == errno.ENODEV

    def test_mkdir_existing_is_eexist(self, proc: Process, dir_path: str) -> None:
        """mkdir of an existing name: EEXIST (fs/namei.c filename_create)."""
        proc.mkdir(dir_path)
        with pytest.raises(OSError) as e:
            proc.mkdir(dir_path)
        assert e.value.errno == errno.EEXIST

    def test_open_directory_for_writing_is_eisdir(self, proc: Process, dir_path: str) -> None:
        """A directory cannot be opened for writing: EISDIR (fs/namei.c may_open)."""
        proc.mkdir(dir_path)
        with pytest.raises(OSError) as e:
            proc.open(dir_path, os.O_RDWR)
        assert e.value.errno == errno.EISDIR


class TestMmapDescriptors:
    def test_mmap_of_a_closed_fd_is_ebadf(self, proc: Process, file_path: str) -> None:
        """mmap looks the fd up first: a closed one is EBADF (mm/mmap.c ksys_mmap_pgoff)."""
        fd = sized_file(proc, file_path, 1)
        proc.close(fd)
        with pytest.raises(OSError) as e:
            proc.mmap(None, PAGE, vmkit.PROT_READ, vmkit.MAP_SHARED, fd, 0)
        assert e.value.errno == errno.EBADF

    def test_mapping_survives_close(self, proc: Process, any_path: str) -> None:
        """The VMA holds its own file reference: close(fd) leaves the mapping working (mm/mmap.c __mmap_region get_file)."""
        fd = sized_file(proc, any_path, 2)
        m = proc.mmap(ARENA, 2 * PAGE, RW, SHARED_FIXED, fd, 0)
        proc.close(fd)
        proc.write(m + PAGE, b"after close")
        line = vma_at(proc, m)
        assert line is not None and line.name == any_path
        fd2 = proc.open(any_path, os.O_RDONLY)
        assert proc.pread(fd2, 11, PAGE) == b"after close"

    def test_shared_writable_mapping_of_read_only_fd_is_eacces(self, proc: Process, file_path: str) -> None:
        """MAP_SHARED|PROT_WRITE needs an fd open for writing; MAP_PRIVATE does not (mm/mmap.c do_mmap)."""
        proc.close(sized_file(proc, file_path, 1))
        fd = proc.open(file_path, os.O_RDONLY)
        with pytest.raises(OSError) as e:
            proc.mmap(None, PAGE, RW, vmkit.MAP_SHARED, fd, 0)
        assert e.value.errno == errno.EACCES
        m = proc.mmap(None, PAGE, RW, vmkit.MAP_PRIVATE, fd, 0)
        proc.write(m, b"private copy")
        assert proc.pread(fd, 4, 0) == bytes(4)

    def test_mapping_of_write_only_fd_is_eacces(self, proc: Process, file_path: str) -> None:
        """Any mapping needs FMODE_READ: an O_WRONLY fd is EACCES (mm/mmap.c do_mmap)."""
        proc.close(sized_file(proc, file_path, 1))
        fd = proc.open(file_path, os.O_WRONLY)
        for flags in (vmkit.MAP_SHARED, vmkit.MAP_PRIVATE):
            with pytest.raises(OSError) as e:
                proc.mmap(None, PAGE, vmkit.PROT_READ, flags, fd, 0)
            assert e.value.errno == errno.EACCES

    def test_file_mapping_maps_line(self, proc: Process, file_path: str) -> None:
        """A file mapping shows its offset and path in maps (fs/proc/task_mmu.c show_map_vma)."""
        fd = sized_file(proc, file_path, 4)
        m = proc.mmap(ARENA, 2 * PAGE, vmkit.PROT_READ, vmkit.MAP_PRIVATE | vmkit.MAP_FIXED, fd, 2 * PAGE)
        line = vma_at(proc, m)
        assert line is not None
        assert (line.start, line.end, line.perms, line.offset, line.name) == (
            m, m + 2 * PAGE, "r--p", 2 * PAGE, file_path)
        assert line.inode != 0


class TestSharedCoherence:
    def test_pwrite_is_visible_in_the_mapping_and_back(self, proc: Process, any_path: str) -> None:
        """A MAP_SHARED mapping maps the page-cache pages pwrite/pread use (mm/filemap.c filemap_fault)."""
        fd = sized_file(proc, any_path, 2)
        m = proc.mmap(ARENA, 2 * PAGE, RW, SHARED_FIXED, fd, 0)
        assert proc.read(m, 4) == bytes(4)
        proc.pwrite(fd, b"through fd", 10)
        assert proc.read(m + 10, 10) == b"through fd"
        proc.write(m + PAGE + 5, b"through mapping")
        assert proc.pread(fd, 15, PAGE + 5) == b"through mapping"

    def test_two_shared_mappings_in_one_process(self, proc: Process, any_path: str) -> None:
        """Two MAP_SHARED mappings of one file share the page cache (mm/filemap.c filemap_fault)."""
        fd = sized_file(proc, any_path, 2)
        a = proc.mmap(ARENA, 2 * PAGE, RW, SHARED_FIXED, fd, 0)
        b = proc.mmap(ARENA + 0x100000, PAGE, RW, SHARED_FIXED, fd, PAGE)
        proc.write(a + PAGE, b"via a")
        assert proc.read(b, 5) == b"via a"
        proc.write(b + 100, b"via b")
        assert proc.read(a + PAGE + 100, 5) == b"via b"

    def test_shared_mapping_over_a_file_grown_later(self, proc: Process, any_path: str) -> None:
        """Pages beyond EOF fault SIGBUS until ftruncate grows the file, then map it (mm/filemap.c filemap_fault)."""
        fd = sized_file(proc, any_path, 1)
        m = proc.mmap(ARENA, 2 * PAGE, RW, SHARED_FIXED, fd, 0)
        with pytest.raises(vmkit.BusError) as e:
            proc.read(m + PAGE, 1)
        assert (e.value.addr, e.value.code) == (m + PAGE, vmkit.BUS_ADRERR)
        proc.ftruncate(fd, 2 * PAGE)
        proc.write(m + PAGE, b"grown")
        assert proc.pread(fd, 5, PAGE) == b"grown"

    def test_store_past_eof_in_the_last_page_does_not_extend_the_file(self, proc: Process,
                                                                       any_path: str) -> None:
        """The last partial page maps fine; bytes beyond EOF read zero and stores there never reach the file size (mm/filemap.c filemap_fault)."""
        fd = proc.open(any_path, O_RDWR_CREAT)
        proc.pwrite(fd, b"x" * 100, 0)
        m = proc.mmap(ARENA, PAGE, RW, SHARED_FIXED, fd, 0)
        assert proc.read(m + 98, 4) == b"xx\0\0"
        proc.write(m + 200, b"beyond")
        assert proc.pread(fd, PAGE, 0) == b"x" * 100


class TestPrivateFileMapping:
    def test_sees_file_changes_until_written(self, proc: Process, any_path: str) -> None:
        """An unwritten MAP_PRIVATE page maps the page cache and shows later pwrites; after the first store it is a private copy (mm/memory.c do_cow_fault)."""
        fd = sized_file(proc, any_path, 2, b"A")
        m = proc.mmap(ARENA, 2 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        assert proc.read(m, 1) == b"A"
        proc.pwrite(fd, b"B1", 0)
        assert proc.read(m, 2) == b"B1"
        proc.write(m + 10, b"mine")
        assert proc.pread(fd, 4, 10) == b"AAAA"
        proc.pwrite(fd, b"C2", 0)
        assert proc.read(m, 2) == b"B1"  # the private copy was made from B1
        assert proc.read(m + 10, 4) == b"mine"
        # the other page has not been written: it still tracks the file
        proc.pwrite(fd, b"D3", PAGE)
        assert proc.read(m + PAGE, 2) == b"D3"

    def test_dontneed_reverts_to_the_file(self, proc: Process, any_path: str) -> None:
        """MADV_DONTNEED drops the private copy; the page shows the file again (mm/madvise.c madvise_dontneed_free)."""
        fd = sized_file(proc, any_path, 1, b"F")
        m = proc.mmap(ARENA, PAGE, RW, PRIVATE_FIXED, fd, 0)
        proc.write(m, b"private")
        proc.pwrite(fd, b"updated", 0)
        assert proc.read(m, 7) == b"private"
        proc.madvise(m, PAGE, vmkit.MADV_DONTNEED)
        assert proc.read(m, 7) == b"updated"

    def test_shared_mapping_store_is_seen_by_unwritten_private_mapping(self, proc: Process,
                                                                       any_path: str) -> None:
        """A store through a shared mapping changes the page cache a private, unwritten mapping reads (mm/filemap.c)."""
        fd = sized_file(proc, any_path, 1)
        s = proc.mmap(ARENA, PAGE, RW, SHARED_FIXED, fd, 0)
        p = proc.mmap(ARENA + 0x100000, PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        assert proc.read(p, 3) == bytes(3)
        proc.write(s, b"abc")
        assert proc.read(p, 3) == b"abc"


class TestTruncation:
    def test_shrink_under_a_shared_mapping_bus_errors(self, proc: Process, any_path: str) -> None:
        """Pages wholly beyond the new EOF are unmapped from page tables; access is SIGBUS BUS_ADRERR (mm/truncate.c truncate_pagecache, mm/filemap.c filemap_fault)."""
        fd = sized_file(proc, any_path, 4, b"T")
        m = proc.mmap(ARENA, 4 * PAGE, RW, SHARED_FIXED, fd, 0)
        assert proc.read(m + 3 * PAGE, 1) == b"T"
        proc.ftruncate(fd, PAGE + 10)
        assert proc.read(m + PAGE, 12) == b"T" * 10 + b"\0\0"  # the partial last page stays, zeroed past EOF
        for page in (2, 3):
            with pytest.raises(vmkit.BusError) as e:
                proc.read(m + page * PAGE, 1)
            assert (e.value.addr, e.value.code) == (m + page * PAGE, vmkit.BUS_ADRERR)
        with pytest.raises(vmkit.BusError) as e:
            proc.write(m + 2 * PAGE, b"w")
        assert e.value.addr == m + 2 * PAGE
        assert vmas_in(proc, m, m + 4 * PAGE) == [(m, m + 4 * PAGE, "rw-s")]
        proc.ftruncate(fd, 4 * PAGE)
        assert proc.read(m + 3 * PAGE, 2) == b"\0\0"  # grown back: the old data is gone

    def test_shrink_under_a_private_mapping(self, proc: Process, any_path: str) -> None:
        """Truncation also drops a private mapping's COW copies beyond EOF: SIGBUS there, private copies below EOF survive (mm/truncate.c truncate_pagecache)."""
        fd = sized_file(proc, any_path, 3, b"Q")
        m = proc.mmap(ARENA, 3 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        proc.write(m, b"low")
        proc.write(m + 2 * PAGE, b"high")
        proc.ftruncate(fd, PAGE)
        assert proc.read(m, 3) == b"low"
        with pytest.raises(vmkit.BusError) as e:
            proc.read(m + 2 * PAGE, 1)
        assert e.value.addr == m + 2 * PAGE

    def test_mapping_longer_than_the_file(self, proc: Process, file_path: str) -> None:
        """mmap may cover more than the file; pages beyond EOF raise SIGBUS, the last file page reads (mm/filemap.c filemap_fault)."""
        fd = sized_file(proc, file_path, 16, b"s")
        m = proc.mmap(None, 32 * PAGE, vmkit.PROT_READ, vmkit.MAP_SHARED, fd, 0)
        assert proc.read(m + 15 * PAGE, 1) == b"s"
        with pytest.raises(vmkit.BusError) as e:
            proc.read(m + 20 * PAGE, 1)
        assert (e.value.addr, e.value.code) == (m + 20 * PAGE, vmkit.BUS_ADRERR)


class TestMemfdAndUnlink:
    def test_memfd_shared_mapping(self, proc: Process) -> None:
        """memfd_create gives an unlinked tmpfs file; maps shows /memfd:NAME (deleted) (mm/memfd.c memfd_create)."""
        fd = proc.memfd_create("vmkit-test")
        assert fd == 3
        m0 = proc.mmap(None, PAGE, vmkit.PROT_READ, vmkit.MAP_SHARED, fd, 0)
        with pytest.raises(vmkit.BusError) as e:
            proc.read(m0, 1)  # size 0: nothing to map yet
        assert e.value.addr == m0
        proc.ftruncate(fd, 2 * PAGE)
        m = proc.mmap(ARENA, 2 * PAGE, RW, SHARED_FIXED, fd, 0)
        line = vma_at(proc, m)
        assert line is not None
        assert (line.start, line.end, line.perms, line.offset, line.name) == (
            m, m + 2 * PAGE, "rw-s", 0, "/memfd:vmkit-test (deleted)")
        proc.write(m + PAGE, b"memfd")
        assert proc.pread(fd, 5, PAGE) == b"memfd"
        proc.pwrite(fd, b"back", 0)
        assert proc.read(m, 4) == b"back"

    def test_memfd_is_shared_with_a_fork_child(self, proc: Process) -> None:
        """A MAP_SHARED memfd mapping is the same shmem object in the child (mm/shmem.c)."""
        fd = proc.memfd_create("forked")
        proc.ftruncate(fd, PAGE)
        m = proc.mmap(ARENA, PAGE, RW, SHARED_FIXED, fd, 0)
        child = proc.fork()
        child.write(m, b"from child")
        assert proc.read(m, 10) == b"from child"

    def test_unlink_of_a_mapped_file(self, proc: Process, any_path: str) -> None:
        """The mapping keeps the inode alive after unlink; maps appends ' (deleted)' (fs/d_path.c d_path)."""
        fd = sized_file(proc, any_path, 2, b"u")
        m = proc.mmap(ARENA, 2 * PAGE, RW, SHARED_FIXED, fd, 0)
        proc.close(fd)
        proc.unlink(any_path)
        line = vma_at(proc, m)
        assert line is not None and line.name == any_path + " (deleted)"
        assert proc.read(m + PAGE, 2) == b"uu"
        proc.write(m + PAGE, b"still here")
        assert proc.read(m + PAGE, 10) == b"still here"


class TestAnonymousIgnoresFd:
    def test_anonymous_mapping_ignores_a_bad_fd(self, proc: Process) -> None:
        """MAP_ANONYMOUS never looks at fd (mm/mmap.c ksys_mmap_pgoff)."""
        a = proc.mmap(None, PAGE, RW, PRIVATE_ANON, 9999, 0)
        proc.write(a, b"ok")
        assert proc.read(a, 2) == b"ok"


class TestPipes:
    """pipe2(2) and what the memory calls and positioned I/O do with its ends (fs/pipe.c; the
    checks of do_mmap, ksys_pread64 and ksys_pwrite64)."""

    def test_pipe_gives_the_two_lowest_free_descriptors(self, proc: Process) -> None:
        assert proc.pipe() == (3, 4)
        assert proc.pipe(os.O_CLOEXEC | os.O_NONBLOCK | os.O_DIRECT) == (5, 6)

    @pytest.mark.parametrize("flags, expected", [
        (os.O_RDWR, errno.EINVAL), (os.O_APPEND, errno.EINVAL),
        (0x80, errno.ENOPKG),  # O_NOTIFICATION_PIPE without CONFIG_WATCH_QUEUE
        (0x80 | os.O_APPEND, errno.EINVAL),  # unknown flags first
    ])
    def test_pipe_flags(self, proc: Process, flags: int, expected: int) -> None:
        with pytest.raises(OSError) as e:
            proc.pipe(flags)
        assert e.value.errno == expected
        assert proc.pipe() == (3, 4)  # nothing was allocated

    def test_pipe_needs_two_free_descriptors(self, proc: Process) -> None:
        proc.setrlimit(7, (4, 4))  # RLIMIT_NOFILE: only fd 3 is free
        with pytest.raises(OSError) as e:
            proc.pipe()
        assert e.value.errno == errno.EMFILE
        assert proc.open("/dev/zero", os.O_RDONLY) == 3  # the first end was given back

    @pytest.mark.parametrize("end, prot, flags, expected", [
        (0, vmkit.PROT_READ, vmkit.MAP_PRIVATE, errno.ENODEV),  # no ->mmap
        (0, vmkit.PROT_READ | vmkit.PROT_EXEC, vmkit.MAP_PRIVATE, errno.EPERM),  # pipefs is noexec
        (0, RW, vmkit.MAP_SHARED, errno.EACCES),  # the read end is not writable
        (1, vmkit.PROT_READ, vmkit.MAP_PRIVATE, errno.EACCES),  # the write end is not readable
        (1, vmkit.PROT_WRITE, vmkit.MAP_SHARED, errno.EACCES),
        (0, vmkit.PROT_READ, vmkit.MAP_SHARED_VALIDATE | vmkit.MAP_SYNC, errno.EOPNOTSUPP),
    ])
    def test_mmap_of_a_pipe(self, proc: Process, end: int, prot: int, flags: int, expected: int) -> None:
        fd = proc.pipe()[end]
        with pytest.raises(OSError) as e:
            proc.mmap(None, PAGE, prot, flags, fd, 0)
        assert e.value.errno == expected

    def test_mmap_of_a_pipe_checks_the_offset_first(self, proc: Process) -> None:
        read_end, _ = proc.pipe()
        with pytest.raises(OSError) as e:
            proc.mmap(None, PAGE, vmkit.PROT_READ, vmkit.MAP_PRIVATE, read_end, (1 << 64) - PAGE)
        assert e.value.errno == errno.EOVERFLOW

    def test_positioned_io_on_a_pipe(self, proc: Process) -> None:
        read_end, write_end = proc.pipe()
        for call, args, expected in ((proc.pread, (read_end, 1, 0), errno.ESPIPE),
                                     (proc.pread, (write_end, 1, 0), errno.ESPIPE),
                                     (proc.pwrite, (read_end, b"x", 0), errno.ESPIPE),
                                     (proc.pwrite, (write_end, b"x", 0), errno.ESPIPE),
                                     (proc.pread, (read_end, 1, -1), errno.EINVAL),
                                     (proc.ftruncate, (write_end, 0), errno.EINVAL)):
            with pytest.raises(OSError) as e:
                call(*args)
            assert e.value.errno == expected

    def test_a_negative_offset_is_einval_before_the_fd_is_looked_up(self, proc: Process) -> None:
        for call, args in ((proc.pread, (99, 1, -1)), (proc.pwrite, (99, b"x", -1))):
            with pytest.raises(OSError) as e:
                call(*args)
            assert e.value.errno == errno.EINVAL
