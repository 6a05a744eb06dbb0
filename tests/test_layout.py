"""``Kernel.spawn(maps=...)``: copying the layout of a real process, file and shmem lines included.

The native child's maps text is the truth: the copy must print the same maps (inode numbers and
shmem devices through :func:`vmkit.fuzz.compare.normalise_maps`) and behave as those mappings do.
"""

from __future__ import annotations

import os

import pytest

import vmkit
from vmkit import native, sim
from vmkit.fuzz.compare import normalise_maps
from vmkit.sim.layout import LayoutError

from conftest import ARENA, PAGE, RW
from helpers import kb, smaps_of

FIXED = vmkit.MAP_FIXED


def native_layout(path: str) -> tuple[str, int]:
    """A native child with a private read-only and a shared writable mapping of ``path`` (a
    4-page file), a split shared anonymous mapping, a memfd and a private /dev/zero mapping."""
    with native.spawn() as p:
        fd = p.open(path, os.O_RDWR | os.O_CREAT)
        p.pwrite(fd, bytes(range(256)) * 64, 0)
        p.mmap(ARENA, 4 * PAGE, vmkit.PROT_READ, vmkit.MAP_PRIVATE | FIXED, fd, 0)
        p.mmap(ARENA + 8 * PAGE, 2 * PAGE, RW, vmkit.MAP_SHARED | FIXED, fd, 2 * PAGE)
        shared = p.mmap(ARENA + 16 * PAGE, 4 * PAGE, RW, vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS | FIXED)
        p.mprotect(shared + 2 * PAGE, 2 * PAGE, vmkit.PROT_READ)
        memfd = p.memfd_create("layout")
        p.ftruncate(memfd, 2 * PAGE)
        p.mmap(ARENA + 24 * PAGE, 2 * PAGE, RW, vmkit.MAP_SHARED | FIXED, memfd, 0)
        zero = p.open("/dev/zero", os.O_RDWR)
        p.mmap(ARENA + 32 * PAGE, 2 * PAGE, RW, vmkit.MAP_PRIVATE | FIXED, zero, 0)
        return p.maps(), p.brk(0)


def test_file_and_shmem_lines_are_copied(file_path: str) -> None:
    """File lines map the model's file of the same path; /dev/zero (deleted) lines share one shmem
    object per inode; memfd lines get a memfd; private /dev/zero is anonymous memory."""
    layout, brk = native_layout(file_path)
    kernel = sim.Kernel(check_invariants=True)
    kernel.fs.import_host(file_path)
    with kernel.spawn(maps=layout, brk=brk) as p:
        assert normalise_maps(p.maps()) == normalise_maps(layout)
        assert p.read(ARENA, 16) == bytes(range(16))
        assert p.read(ARENA + 8 * PAGE, 4) == bytes(range(4))
        p.write(ARENA + 8 * PAGE, b"shared")  # the file was opened read-write for this line
        assert p.read(ARENA + 16 * PAGE, 4) == bytes(4)
        p.write(ARENA + 16 * PAGE, b"x")
        with pytest.raises(vmkit.SegmentationFault):
            p.write(ARENA + 18 * PAGE, b"x")  # the read-only half of the split shmem mapping
        p.write(ARENA + 24 * PAGE + PAGE, b"m")
        p.write(ARENA + 32 * PAGE, b"z")
        assert kb(smaps_of(p, ARENA + 32 * PAGE)["Anonymous"]) == 4
        assert normalise_maps(p.maps()) == normalise_maps(layout)


def test_a_file_missing_from_the_model_is_a_clear_error(file_path: str) -> None:
    """The file must be in the model's file system; the error names the line."""
    layout, brk = native_layout(file_path)
    lineno = next(i for i, line in enumerate(layout.splitlines(), 1) if file_path in line)
    with pytest.raises(LayoutError, match=f"maps line {lineno}: {file_path} is not in the model"):
        sim.Kernel().spawn(maps=layout, brk=brk)


def test_sysv_shared_memory_is_not_modelled() -> None:
    """SysV shared memory has no model object: NotImplementedError naming the line."""
    line = "200000000-200002000 rw-s 00000000 00:01 7                          /SYSV00000000 (deleted)\n"
    with pytest.raises(NotImplementedError, match="maps line 1"):
        sim.Kernel().spawn(maps=line)
