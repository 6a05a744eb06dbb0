"""The model kernel's own file system: inodes with one page cache each, open files, paths.

One page cache per inode is shared by every mapping of the file and by pread/pwrite, so MAP_SHARED
mappings, read() and write() agree.  Kinds of inode, as the kernel's ``->mmap`` hooks treat them:

* regular files on ``/tmp`` (ext4-like: a "disk" behind the cache; MAP_SYNC refused, as ext4
  without DAX does) and ``/dev/shm`` (tmpfs: the cache is the storage);
* shmem objects: memfd_create files (``/memfd:NAME (deleted)``) and the object behind each shared
  anonymous mapping (``/dev/zero (deleted)``);
* ``/dev/zero`` (a private mapping of it is anonymous memory that still names the device);
* directories and pidfds (no ``->mmap``: ENODEV).

Device numbers and the first inode numbers default to those of our machines (ext4 ``fe:00``, tmpfs
``00:1b``, devtmpfs ``00:06``, the internal shmem mount ``00:01``).
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from vmkit.errors import os_error
from vmkit.flags import PAGE_SIZE
from vmkit.sim.frames import pool

#: ``MAX_PAGECACHE_ORDER`` on x86-64 (``HPAGE_PMD_ORDER``) and ``mapping_max_folio_size``.
MAX_PAGECACHE_ORDER = 9
MAX_FOLIO_BYTES = PAGE_SIZE << MAX_PAGECACHE_ORDER

@dataclass(frozen=True)
class Mount:
    """A file system: its maps ``dev`` field and what its ``->mmap`` accepts."""

    name: str
    dev: str
    has_disk: bool
    refuses_map_sync: bool
    #: ``SB_I_NOEXEC`` (``path_noexec``): no PROT_EXEC mappings of its files.
    noexec: bool = False


EXT4 = Mount("ext4", "fe:00", has_disk=True, refuses_map_sync=True)
TMPFS = Mount("tmpfs", "00:1b", has_disk=False, refuses_map_sync=False)
SHMEM = Mount("shmem", "00:01", has_disk=False, refuses_map_sync=False)
DEVTMPFS = Mount("devtmpfs", "00:06", has_disk=False, refuses_map_sync=False)
#: pidfs, where pidfds live (``pidfs_init_fs_context`` sets SB_I_NOEXEC).
PROCFS = Mount("anon_inode", "00:0f", has_disk=False, refuses_map_sync=False, noexec=True)
HUGETLBFS = Mount("hugetlbfs", "00:10", has_disk=False, refuses_map_sync=False)
#: pipefs, where pipes live: a pseudo file system (``init_pseudo``: SB_I_NOEXEC).
PIPEFS = Mount("pipefs", "00:0f", has_disk=False, refuses_map_sync=False, noexec=True)


@dataclass(eq=False)
class Inode:
    """An inode and its page cache (``struct address_space``: index -> frame)."""

    mount: Mount
    ino: int
    mode: int
    uid: int = 0
    size: int = 0
    #: The path shown in maps (``d_path``); ``deleted`` appends " (deleted)".
    path: str = ""
    deleted: bool = False
    cache: dict[int, int] = field(default_factory=dict)
    #: Clean contents behind the cache of a disk file system, by page index.
    disk: dict[int, bytes] = field(default_factory=dict)
    #: Page-cache indexes written since the last write-back.
    dirty: set[int] = field(default_factory=set)
    #: Large folios of the page cache (ext4 only): head index -> number of pages.  An index of the
    #: cache that no large folio covers is an order-0 folio.
    folios: dict[int, int] = field(default_factory=dict)
    #: Index -> head index, for every page of a large folio.
    folio_head: dict[int, int] = field(default_factory=dict)
    #: Indexes whose folio carries PG_readahead (the asynchronous readahead trigger).
    ra_marks: set[int] = field(default_factory=set)
    kind: str = "reg"  # reg, dir, zero, null, pidfd, symlink
    #: The process a pidfd refers to; the path a symlink points to.
    target: object = None
    #: The device column of maps when it is not the mount's (files imported from the host).
    dev: str | None = None
    #: The huge page size of a hugetlbfs file (``huge_page_size(hstate_inode)``); 0 elsewhere.
    huge_size: int = 0

    @property
    def maps_dev(self) -> str:
        return self.dev if self.dev is not None else self.mount.dev

    @property
    def is_shmem(self) -> bool:
        return self.mount in (TMPFS, SHMEM)

    def maps_name(self) -> str:
        return self.path + (" (deleted)" if self.deleted else "")

    def pages(self) -> int:
        """``DIV_ROUND_UP(i_size, PAGE_SIZE)``: page indexes at or past it fault with SIGBUS."""
        return (self.size + PAGE_SIZE - 1) // PAGE_SIZE

    # --- page cache ---------------------------------------------------------------------------

    def find_page(self, index: int) -> int | None:
        return self.cache.get(index)

    @property
    def large_folios(self) -> bool:
        """``mapping_large_folio_support``: ext4 regular files (since 6.16); tmpfs and shmem
        mounted without ``huge=`` (ours) use order-0 folios only."""
        return self.mount is EXT4 and self.kind == "reg"

    def folio_of(self, index: int) -> tuple[int, int]:
        """(head index, number of pages) of the cached folio holding ``index``."""
        head = self.folio_head.get(index)
        if head is None:
            return index, 1
        return head, self.folios[head]

    def folio_dirty(self, index: int) -> bool:
        """``folio_test_dirty`` of the folio holding ``index``: one dirty page dirties the folio."""
        head, nr = self.folio_of(index)
        if nr == 1:
            return index in self.dirty
        return any(i in self.dirty for i in range(head, head + nr))

    def add_folio(self, index: int, nr: int) -> None:
        """Adds a folio of ``nr`` pages at ``index`` (none of them cached)."""
        self._add_folio(index, nr)

    def _add_folio(self, index: int, nr: int) -> None:
        """``filemap_add_folio`` of a new zero-filled (or read-in) folio of ``nr`` pages at ``index``."""
        for i in range(index, index + nr):
            self.get_page(i)
        if nr > 1:
            self.folios[index] = nr
            for i in range(index, index + nr):
                self.folio_head[i] = index

    def split_folio(self, index: int) -> None:
        """Splits the large folio holding ``index`` (if any) into order-0 folios."""
        head = self.folio_head.get(index)
        if head is None:
            return
        for i in range(head, head + self.folios.pop(head)):
            del self.folio_head[i]

    def write_folio_order(self, index: int, length: int) -> int:
        """The pages of the folio ``write_begin`` creates for a write of ``length`` bytes at page
        ``index`` that is not cached (``__filemap_get_folio`` with ``fgf_set_order(len)``): the
        order is ``ilog2(len) - PAGE_SHIFT`` capped at MAX_PAGECACHE_ORDER (9), lowered to the
        alignment of ``index`` (``__ffs``), then lowered while the range meets a cached page
        (``filemap_add_folio`` fails with EEXIST)."""
        if not self.large_folios:
            return 1
        shift = length.bit_length() - 1
        order = min(shift - 12, MAX_PAGECACHE_ORDER) if shift > 12 else 0
        if index & ((1 << order) - 1):
            order = (index & -index).bit_length() - 1
        while order > 0 and any(i in self.cache for i in range(index, index + (1 << order))):
            order -= 1
        return 1 << order

    def readahead(self, start: int, nr: int, mark: int | None = None) -> None:
        """``page_cache_ra_unbounded`` with order-0 folios: reads the uncached pages of
        [start, start + nr) below EOF into the cache; the folio created at ``mark`` (if any)
        gets PG_readahead."""
        end = min(start + nr, self.pages())
        for index in range(start, end):
            if index not in self.cache:
                self.get_page(index)
                if index == mark:
                    self.ra_marks.add(index)

    def get_page(self, index: int) -> int:
        """The cache frame for ``index``, reading it in (or zero-filling it) on a miss."""
        frame = self.cache.get(index)
        if frame is None:
            frame = pool().alloc()
            data = self.disk.get(index)
            if data:
                pool().write(frame, 0, data)
            self.cache[index] = frame
        return frame

    def mark_dirty(self, index: int) -> None:
        self.dirty.add(index)

    def writeback(self, first: int = 0, last: int | None = None) -> None:
        """Writes dirty cache pages in [first, last] to the disk (``filemap_write_and_wait``)."""
        if not self.mount.has_disk:
            self.dirty.clear()
            return
        for index in sorted(self.dirty):
            if index >= first and (last is None or index <= last):
                self.disk[index] = pool().read(self.cache[index], 0, PAGE_SIZE)
                self.dirty.discard(index)

    def drop_pages(self, first: int, last: int | None = None) -> None:
        """Removes cache pages in [first, last] (truncation, hole punching:
        ``truncate_inode_pages_range``).  A large folio that straddles an end of the range goes
        through ``truncate_inode_partial_folio``: its pages in the range are zeroed; a dirty one
        cannot be split (ext4 cannot release its dirty buffers) and stays whole in the cache, range
        included; a clean one is split (:meth:`_split_partial`) and the pieces inside the range go."""
        kept: set[int] = set()
        for head in {self.folio_head[e] for e in (first, last) if e is not None and e in self.folio_head}:
            nr = self.folios[head]
            if head >= first and (last is None or head + nr - 1 <= last):
                continue
            if self.folio_dirty(head):
                for index in range(head, head + nr):
                    if index >= first and (last is None or index <= last):
                        pool().zero(self.cache[index])
                        kept.add(index)
            else:
                self._split_partial(head, nr, first, last)
        for index in [i for i in self.cache if i >= first and (last is None or i <= last)]:
            self.disk.pop(index, None)
            if index in kept:
                continue
            pool().put(self.cache.pop(index))
            self.split_folio(index)
            self.dirty.discard(index)
            self.ra_marks.discard(index)
        for index in [i for i in self.disk if i >= first and (last is None or i <= last)]:
            del self.disk[index]

    def _split_partial(self, head: int, nr: int, first: int, last: int | None) -> None:
        """``try_folio_split`` as ``truncate_inode_partial_folio`` does it: a non-uniform split at
        the range's first page inside the folio (halving the piece that holds it down to one
        page), then, if the range ends inside the folio, the same split of the piece holding the
        page after the range."""
        self._split_at(head, nr, max(first, head))
        if last is not None and last + 1 < head + nr:
            piece = self.folio_head.get(last + 1)
            if piece is not None:
                self._split_at(piece, self.folios[piece], last + 1)

    def _split_at(self, head: int, nr: int, at: int) -> None:
        """``__split_unmapped_folio`` (non-uniform): halves the folio repeatedly, each time keeping
        the other half as a folio of its own, until ``at`` is an order-0 folio."""
        self.split_folio(head)
        while nr > 1:
            nr //= 2
            if at < head + nr:
                other = head + nr
            else:
                other, head = head, head + nr
            if nr > 1:
                self.folios[other] = nr
                for i in range(other, other + nr):
                    self.folio_head[i] = other

    def read(self, n: int, offset: int) -> bytes:
        """``read_iter`` through the page cache (pages read become cached).  A hugetlbfs file's
        holes read as zeros without allocating (``hugetlbfs_read_iter``); with the empty pool it
        never has pages."""
        if self.kind in ("zero", "null"):  # drivers/char/mem.c: read_iter_zero, read_null (EOF)
            return bytes(n) if self.kind == "zero" else b""
        end = min(offset + n, self.size)
        if self.is_shmem:
            return self._read_shmem(offset, end)
        if self.huge_size:
            if self.cache:
                raise NotImplementedError("reading hugetlbfs pages (a non-empty pool) is not modelled")
            return bytes(max(0, end - offset))
        out = bytearray()
        pos = offset
        while pos < end:
            index, inpage = divmod(pos, PAGE_SIZE)
            take = min(PAGE_SIZE - inpage, end - pos)
            out += pool().read(self.get_page(index), inpage, take)
            pos += take
        return bytes(out)

    def _read_shmem(self, offset: int, end: int) -> bytes:
        """``shmem_file_read_iter``: a hole (``SGP_READ`` finds no folio) reads as zeros and
        allocates nothing (mm/shmem.c)."""
        out = bytearray()
        pos = offset
        while pos < end:
            index, inpage = divmod(pos, PAGE_SIZE)
            take = min(PAGE_SIZE - inpage, end - pos)
            frame = self.cache.get(index)
            out += pool().read(frame, inpage, take) if frame is not None else bytes(take)
            pos += take
        return bytes(out)

    def write(self, data: bytes, offset: int) -> int:
        """``write_iter`` through the page cache (``generic_perform_write``); extends the file.  Each
        uncached page is created as part of the folio ``write_begin`` allocates for the rest of the
        write (:meth:`write_folio_order`; the write is cut at ``mapping_max_folio_size``, 2 MiB).
        /dev/zero and /dev/null take and drop everything (``write_null``)."""
        if self.kind in ("zero", "null"):
            return len(data)
        pos, done = offset, 0
        while done < len(data):
            index, inpage = divmod(pos, PAGE_SIZE)
            take = min(PAGE_SIZE - inpage, len(data) - done)
            if index not in self.cache:
                chunk = MAX_FOLIO_BYTES - (pos & (MAX_FOLIO_BYTES - 1))
                self._add_folio(index, self.write_folio_order(index, min(chunk, len(data) - done)))
            frame = self.get_page(index)
            pool().write(frame, inpage, data[done:done + take])
            self.mark_dirty(index)
            pos += take
            done += take
        self.size = max(self.size, offset + len(data))
        return done


@dataclass(eq=False)
class OpenFile:
    """``struct file``: an inode opened with some access mode (VMAs compare files by identity)."""

    inode: Inode
    flags: int
    #: ``f_ra.mmap_miss``: page-cache misses of mmap faults not yet repaid by fault-around hits.
    mmap_miss: int = 0
    #: ``f_ra``'s window: ``start``, ``size``, ``async_size`` (pages) and folio ``order``.
    ra_start: int = 0
    ra_size: int = 0
    ra_async: int = 0
    ra_order: int = 0
    #: ``f_ra.prev_pos``: the byte after the last read(2), -1 before any.
    ra_prev_pos: int = -1

    @property
    def readable(self) -> bool:
        return self.flags & os.O_ACCMODE in (os.O_RDONLY, os.O_RDWR)

    @property
    def writable(self) -> bool:
        return self.flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


class FileSystem:
    """Paths to inodes for one model kernel, with ``/tmp`` (ext4), ``/dev/shm`` (tmpfs), ``/dev/zero``."""

    def __init__(self) -> None:
        self._ino = itertools.count(2146867)
        self._shmem_ino = itertools.count(1123)
        self.entries: dict[str, Inode] = {}
        for path, mount in (("/", EXT4), ("/tmp", EXT4), ("/dev", DEVTMPFS), ("/dev/shm", TMPFS)):
            self.entries[path] = Inode(mount, next(self._ino), stat.S_IFDIR | 0o1777, kind="dir", path=path)
        self.entries["/dev/zero"] = Inode(DEVTMPFS, 4, stat.S_IFCHR | 0o666, kind="zero", path="/dev/zero")
        self.entries["/dev/null"] = Inode(DEVTMPFS, 5, stat.S_IFCHR | 0o666, kind="null", path="/dev/null")
        #: Called with (inode, first page index) when a file shrinks: unmaps the pages beyond.
        self.on_truncate: Callable[[Inode, int], None] = lambda inode, index: None

    # --- paths --------------------------------------------------------------------------------

    @staticmethod
    def _normal(path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return os.path.normpath(path)

    def _parent(self, path: str) -> Inode:
        parent = self.entries.get(os.path.dirname(path))
        if parent is None:
            raise os_error(errno.ENOENT, path)
        if parent.kind != "dir":
            raise os_error(errno.ENOTDIR, path)
        return parent

    def _mount_for(self, path: str) -> Mount:
        return TMPFS if path.startswith("/dev/shm/") else EXT4

    def lookup(self, path: str) -> Inode:
        inode = self.entries.get(self._normal(path))
        if inode is None:
            self._parent(self._normal(path))
            raise os_error(errno.ENOENT, path)
        return inode

    def _search(self, path: str, uid: int, privileged: bool) -> None:
        """Path walk: every directory above ``path`` needs search (x) permission
        (``may_lookup``), unless CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH."""
        if privileged:
            return
        directory = os.path.dirname(path)
        while directory != "/":
            inode = self.entries.get(directory)
            if inode is not None and inode.kind == "dir" and not self._may(inode, uid, execute=True):
                raise os_error(errno.EACCES, path)
            directory = os.path.dirname(directory)

    def open(self, path: str, flags: int, mode: int, uid: int, privileged: bool) -> OpenFile:
        """open(2): O_CREAT, O_EXCL, O_TRUNC, O_DIRECTORY; permission bits against ``uid``."""
        path = self._normal(path)
        self._search(path, uid, privileged)
        inode = self.entries.get(path)
        if inode is None:
            if not flags & os.O_CREAT:
                self._parent(path)
                raise os_error(errno.ENOENT, path)
            parent = self._parent(path)
            if not privileged and not self._may(parent, uid, write=True):
                raise os_error(errno.EACCES, path)
            inode = Inode(self._mount_for(path), next(self._ino), stat.S_IFREG | (mode & 0o7777),
                          uid=uid, path=path)
            self.entries[path] = inode
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise os_error(errno.EEXIST, path)
        if flags & os.O_DIRECTORY and inode.kind != "dir":
            raise os_error(errno.ENOTDIR, path)
        access = flags & os.O_ACCMODE
        if inode.kind == "dir" and access != os.O_RDONLY:
            raise os_error(errno.EISDIR, path)
        if not privileged:
            if access in (os.O_RDONLY, os.O_RDWR) and not self._may(inode, uid, write=False):
                raise os_error(errno.EACCES, path)
            if access in (os.O_WRONLY, os.O_RDWR) and not self._may(inode, uid, write=True):
                raise os_error(errno.EACCES, path)
        if flags & os.O_TRUNC and inode.kind == "reg" and access != os.O_RDONLY:
            self.truncate(inode, 0)
        return OpenFile(inode, flags)

    @staticmethod
    def _may(inode: Inode, uid: int, write: bool = False, execute: bool = False) -> bool:
        bits = inode.mode >> 6 if inode.uid == uid else inode.mode
        return bool(bits & (0o1 if execute else 0o2 if write else 0o4))

    def mkdir(self, path: str, mode: int, uid: int) -> None:
        path = self._normal(path)
        if path in self.entries:
            raise os_error(errno.EEXIST, path)
        self._parent(path)
        self.entries[path] = Inode(self._mount_for(path), next(self._ino), stat.S_IFDIR | mode,
                                   uid=uid, kind="dir", path=path)

    def unlink(self, path: str) -> None:
        path = self._normal(path)
        inode = self.lookup(path)
        if inode.kind == "dir":
            raise os_error(errno.EISDIR, path)
        del self.entries[path]
        inode.deleted = True

    def truncate(self, inode: Inode, length: int) -> None:
        """``truncate_setsize`` + ``truncate_pagecache``: pages past the new end leave the cache and
        every mapping (private copies included); the partial last page is zeroed past the end."""
        old = inode.size
        inode.size = length
        if length < old:
            first_gone = (length + PAGE_SIZE - 1) // PAGE_SIZE
            self.on_truncate(inode, first_gone)
            inode.drop_pages(first_gone)
            tail = length % PAGE_SIZE
            if tail:
                index = length // PAGE_SIZE
                frame = inode.find_page(index)
                if frame is not None:
                    pool().zero(frame, tail, PAGE_SIZE - tail)
                if index in inode.disk:
                    inode.disk[index] = inode.disk[index][:tail] + bytes(PAGE_SIZE - tail)

    # --- objects without a path -----------------------------------------------------------------

    def memfd(self, name: str, uid: int = 0) -> Inode:
        """A memfd_create object, owned by its creator's fsuid."""
        return Inode(SHMEM, next(self._shmem_ino), stat.S_IFREG | 0o777, uid=uid, path=f"/memfd:{name}",
                     deleted=True)

    def hugetlb_memfd(self, name: str, huge_size: int, uid: int = 0) -> Inode:
        """memfd_create(MFD_HUGETLB): ``hugetlb_file_setup`` makes an empty hugetlbfs file, mode
        0777 (S_IRWXUGO), owned by the creator's fsuid (mm/memfd.c, fs/hugetlbfs/inode.c)."""
        return Inode(HUGETLBFS, next(self._shmem_ino), stat.S_IFREG | 0o777, uid=uid,
                     path=f"/memfd:{name}", deleted=True, huge_size=huge_size)

    def shmem_zero(self, size: int, uid: int = 0) -> Inode:
        """``shmem_zero_setup``: the object behind a shared anonymous mapping."""
        return Inode(SHMEM, next(self._shmem_ino), stat.S_IFREG | 0o777, size=size, uid=uid,
                     path="/dev/zero", deleted=True)

    def hugetlb_file(self, size: int, uid: int = 0) -> Inode:
        """``hugetlb_file_setup``: the object behind an anonymous MAP_HUGETLB mapping, mode 0777
        (S_IRWXUGO) and owned by the creator's fsuid (fs/hugetlbfs/inode.c)."""
        return Inode(HUGETLBFS, next(self._shmem_ino), stat.S_IFREG | 0o777, size=size, uid=uid,
                     path="/anon_hugepage", deleted=True)

    def pipe(self) -> Inode:
        """The inode of a new pipe (``create_pipe_files``): no ``->mmap`` (ENODEV), no positioned
        I/O (ESPIPE: FMODE_PREAD/FMODE_PWRITE are not set)."""
        return Inode(PIPEFS, next(self._ino), 0o010600, kind="pipe", path="pipe:")

    def pidfd(self, target: object) -> Inode:
        return Inode(PROCFS, 0, 0o600, kind="pidfd", path="anon_inode:[pidfd]", target=target)

    def _make_dirs(self, path: str) -> None:
        directory = os.path.dirname(path)
        parts = directory.strip("/").split("/") if directory != "/" else []
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = Inode(EXT4, next(self._ino), stat.S_IFDIR | 0o755, kind="dir", path=d)

    def import_host(self, host_path: str, path: str | None = None) -> Inode:
        """Makes a host file a read-only model file at ``path`` (default: the same path), lazily.

        Its contents stay on the host: a page is read from the host file only when the model
        needs it (a fault, a read, exec reading headers).  The inode has the host file's device
        (``major:minor`` as maps prints it), inode number and permission bits, so maps lines of its
        mappings are the kernel's.  A missing host file raises FileNotFoundError.
        """
        st = os.stat(host_path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{host_path} is not a regular file")
        path = self._normal(path or host_path)
        self._make_dirs(path)

        def load(index: int) -> bytes:
            with open(host_path, "rb") as f:
                f.seek(index * PAGE_SIZE)
                return f.read(PAGE_SIZE).ljust(PAGE_SIZE, b"\0")

        inode = Inode(EXT4, st.st_ino, stat.S_IFREG | (st.st_mode & 0o7777), path=path,
                      size=st.st_size, dev=f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}")
        inode.disk = LazyDisk(load, inode.pages())
        self.entries[path] = inode
        return inode

    def add_image(self, path: str, size: int, head: bytes, *, dev: tuple[int, int] = (0xFE, 0),
                  ino: int, mode: int = 0o755) -> Inode:
        """A read-only regular file of ``size`` bytes: ``head`` and then zeros (the rebuilt image of
        a binary whose headers are known), with the given device and inode number for maps."""
        if len(head) > size:
            raise ValueError(f"{path}: head of {len(head)} bytes is larger than the file ({size} bytes)")
        path = self._normal(path)
        self._make_dirs(path)
        head = bytes(head)

        def load(index: int) -> bytes:
            return head[index * PAGE_SIZE:(index + 1) * PAGE_SIZE].ljust(PAGE_SIZE, b"\0")

        inode = Inode(EXT4, ino, stat.S_IFREG | (mode & 0o7777), path=path, size=size,
                      dev=f"{dev[0]:02x}:{dev[1]:02x}")
        inode.disk = LazyDisk(load, (len(head) + PAGE_SIZE - 1) // PAGE_SIZE)
        self.entries[path] = inode
        return inode

    def add_file(self, path: str, size: int = 0, mode: int = 0o644) -> Inode:
        """A regular file of ``size`` zero bytes at ``path`` on the file system that path lies on
        (tmpfs under ``/dev/shm``, ext4 elsewhere), its directories made as needed — the stand-in
        for a file the model knows only by name and size (a traced program's file)."""
        path = self._normal(path)
        self._make_dirs(path)
        inode = Inode(self._mount_for(path), next(self._ino), stat.S_IFREG | (mode & 0o7777),
                      path=path, size=size)
        self.entries[path] = inode
        return inode

    def symlink(self, target: str, path: str) -> None:
        """A symbolic link at ``path`` to the absolute path ``target`` (followed by :meth:`resolve`)."""
        path = self._normal(path)
        if path in self.entries:
            raise os_error(errno.EEXIST, path)
        self._make_dirs(path)
        self.entries[path] = Inode(EXT4, next(self._ino), stat.S_IFLNK | 0o777, kind="symlink",
                                   path=path, target=self._normal(target))

    def resolve(self, path: str) -> str:
        """``path`` with symbolic links of any component followed (ELOOP after 40, as namei)."""
        path = self._normal(path)
        for _ in range(40):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                prefix = "/" + "/".join(parts[:i])
                inode = self.entries.get(prefix)
                if inode is not None and inode.kind == "symlink":
                    path = self._normal("/".join([str(inode.target), *parts[i:]]))
                    break
            else:
                return path
        raise os_error(errno.ELOOP, path)


class LazyDisk(dict[int, bytes]):
    """The disk of a file whose clean pages come from a loader on first use (pages ``< npages``;
    the rest are holes).  A page once loaded, written back or dropped is an ordinary entry."""

    def __init__(self, load: Callable[[int], bytes], npages: int) -> None:
        super().__init__()
        self._load = load
        self._npages = npages
        self._gone: set[int] = set()

    def _fill(self, index: int) -> bool:
        if dict.__contains__(self, index):
            return True
        if 0 <= index < self._npages and index not in self._gone:
            dict.__setitem__(self, index, self._load(index))
            return True
        return False

    def get(self, index: int, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        return dict.__getitem__(self, index) if self._fill(index) else default

    def __getitem__(self, index: int) -> bytes:
        if not self._fill(index):
            raise KeyError(index)
        return dict.__getitem__(self, index)

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self._fill(index)

    def __iter__(self) -> Iterator[int]:
        loaded = set(dict.keys(self))
        lazy = (i for i in range(self._npages) if i not in self._gone and i not in loaded)
        return iter([*loaded, *lazy])

    def __delitem__(self, index: int) -> None:
        self._gone.add(index)
        if dict.__contains__(self, index):
            dict.__delitem__(self, index)

    def pop(self, index: int, *default: object) -> object:  # type: ignore[override]
        present = index in self
        self._gone.add(index)
        if present:
            return dict.pop(self, index)
        if default:
            return default[0]
        raise KeyError(index)
