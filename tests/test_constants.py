"""Constants, errors, faults and the exported names of vmkit, checked against the machine.

Every ABI constant is compared with the value the C compiler sees in this machine's headers (the
linux-libc-dev 6.1 UAPI headers and glibc 2.36).  Constants those headers lack are compared with the
6.12 kernel source's UAPI text and with the numbers recorded in machine-facts.md (§2, §13), and are
exercised on the running kernel.  These are facts about the real machine and the package, not
about a backend, so the file is native-only.
"""

from __future__ import annotations

import __future__
import copy
import enum
import errno
import inspect
import math
import mmap as pymmap
import os
import pickle
import re
import resource
import shutil
import signal
import subprocess
import types
from pathlib import Path

import pytest

import vmkit
from vmkit import native
from vmkit.errors import fault_for, os_error
from vmkit.native import NativeProcess
from vmkit.process import Process

from conftest import PAGE, PRIVATE_ANON, RW
from helpers import vm_flags

pytestmark = pytest.mark.native_only

SPEC = Path("/work/shared/spec")
KSRC = Path("/usr/src/linux-source-6.12")

#: Every constant the seed (spec/seed-memory-syscalls.md) names.  PROT_SAO is PowerPC's 0x10: no x86-64
#: header defines it and x86 mprotect rejects it with EINVAL (test_prot_sao_is_powerpcs_value).
SEED_CONSTANTS = [
    "PROT_SAO", "PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC", "PROT_SEM", "PROT_GROWSUP", "PROT_GROWSDOWN",
    "MAP_SHARED", "MAP_SHARED_VALIDATE", "MAP_PRIVATE", "MAP_32BIT", "MAP_ANONYMOUS", "MAP_ANON",
    "MAP_DENYWRITE", "MAP_EXECUTABLE", "MAP_FIXED", "MAP_FIXED_NOREPLACE", "MAP_GROWSDOWN",
    "MAP_HUGETLB", "MAP_HUGE_2MB", "MAP_HUGE_2GB", "MAP_LOCKED", "MAP_NONBLOCK", "MAP_NORESERVE",
    "MAP_POPULATE", "MAP_STACK", "MAP_SYNC", "MAP_UNINITIALIZED", "MAP_FAILED",
    "MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP", "MS_ASYNC", "MS_SYNC", "MS_INVALIDATE",
    "MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_WILLNEED", "MADV_DONTNEED", "MADV_REMOVE",
    "MADV_DONTFORK", "MADV_DOFORK", "MADV_HWPOISON", "MADV_MERGEABLE", "MADV_UNMERGEABLE",
    "MADV_SOFT_OFFLINE", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_COLLAPSE", "MADV_DONTDUMP",
    "MADV_DODUMP", "MADV_FREE", "MADV_WIPEONFORK", "MADV_KEEPONFORK", "MADV_COLD", "MADV_PAGEOUT",
    "MADV_POPULATE_READ", "MADV_POPULATE_WRITE", "MLOCK_ONFAULT", "MCL_CURRENT", "MCL_FUTURE",
    "MCL_ONFAULT",
]
#: Named by the brief / api.md beyond the seed.
EXTRA_CONSTANTS = [
    "MADV_GUARD_INSTALL", "MADV_GUARD_REMOVE", "MADV_DONTNEED_LOCKED", "MAP_DROPPABLE", "MAP_ABOVE4G",
    "MAP_TYPE", "MAP_HUGE_SHIFT", "MAP_HUGE_MASK", "MFD_CLOEXEC", "MFD_ALLOW_SEALING", "MFD_HUGETLB",
    "MFD_NOEXEC_SEAL", "MFD_EXEC", "SEGV_MAPERR", "SEGV_ACCERR", "SEGV_BNDERR", "SEGV_PKUERR",
    "BUS_ADRALN", "BUS_ADRERR", "BUS_OBJERR", "BUS_MCEERR_AR", "BUS_MCEERR_AO", "IOV_MAX", "PAGE_SIZE",
]
HUGE_SIZES = [n for n in vmkit.MapHuge.__members__ if n.startswith("MAP_HUGE_") and n[-2:] in ("KB", "MB", "GB")]

#: machine-facts.md §2 (and §13 for the pidfd pseudo-descriptors): constants missing from the 6.1
#: headers, with the numbers observed to work on the 6.18 kernel.
MACHINE_FACTS = {
    "MADV_GUARD_INSTALL": 102, "MADV_GUARD_REMOVE": 103, "MAP_DROPPABLE": 0x08, "MAP_ABOVE4G": 0x80,
    "PIDFD_SELF_THREAD": -10000, "PIDFD_SELF_THREAD_GROUP": -10001,
}

ENUM_OF_PREFIX = {
    "PROT_": (vmkit.Prot, enum.IntFlag), "MAP_HUGE_": (vmkit.MapHuge, enum.IntEnum),
    "MAP_": (vmkit.Map, enum.IntFlag),
    "MREMAP_": (vmkit.MRemap, enum.IntFlag), "MS_": (vmkit.MS, enum.IntFlag),
    "MADV_": (vmkit.Madv, enum.IntEnum), "MLOCK_": (vmkit.MLock, enum.IntFlag),
    "MCL_": (vmkit.MCL, enum.IntFlag), "MFD_": (vmkit.MFD, enum.IntFlag),
    "SEGV_": (vmkit.SegvCode, enum.IntEnum), "BUS_": (vmkit.BusCode, enum.IntEnum),
}
NOT_ENUM_MEMBERS = {"MAP_ANON", "MAP_FAILED", "MAP_HUGE_SHIFT", "MAP_HUGE_MASK", "IOV_MAX", "PAGE_SIZE"}
ENUM_MEMBERS = sorted(name for cls in vmkit.flags.EXPORTED_ENUMS for name in cls.__members__)
ALL_CONSTANTS = sorted(set(SEED_CONSTANTS + EXTRA_CONSTANTS + HUGE_SIZES + ENUM_MEMBERS))


def _c_program(headers: list[str], names: list[str], prelude: str = "") -> str:
    lines = [prelude, "#include <stdio.h>", "#include <stdint.h>", *(f"#include <{h}>" for h in headers),
             "int main(void) {"]
    for name in names:
        lines += [f"#ifdef {name}", f'  printf("{name} %lld\\n", (long long)(intptr_t)({name}));',
                  "#else", f'  printf("{name} -\\n");', "#endif"]
    lines += ["  return 0;", "}"]
    return "\n".join(lines)


def _compile_and_run(tmp: Path, stem: str, source: str) -> dict[str, int | None]:
    c, exe = tmp / f"{stem}.c", tmp / stem
    c.write_text(source)
    subprocess.run(["gcc", "-Wall", "-o", str(exe), str(c)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    values: dict[str, int | None] = {}
    for line in out.splitlines():
        name, value = line.split()
        values[name] = None if value == "-" else int(value)
    return values


@pytest.fixture(scope="module")
def uapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int | None]:
    """The value of every constant in this machine's kernel UAPI headers (None if not defined)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    names = [n for n in ALL_CONSTANTS
             if not n.startswith(("SEGV_", "BUS_")) and n not in ("MAP_FAILED", "IOV_MAX", "PAGE_SIZE")]
    names += ["PIDFD_SELF_THREAD", "PIDFD_SELF_THREAD_GROUP"]
    src = _c_program(["linux/mman.h", "linux/memfd.h", "linux/pidfd.h"], names)
    return _compile_and_run(tmp_path_factory.mktemp("uapi"), "uapi", src)


@pytest.fixture(scope="module")
def glibc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int | None]:
    """The value of every constant as glibc's headers define it, plus sysconf(_SC_PAGESIZE)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    names = [n for n in ALL_CONSTANTS if n != "PAGE_SIZE"]
    src = _c_program(["sys/mman.h", "signal.h", "limits.h", "unistd.h"], names, "#define _GNU_SOURCE")
    src = src.replace("  return 0;", '  printf("PAGE_SIZE %ld\\n", sysconf(_SC_PAGESIZE));\n  return 0;')
    return _compile_and_run(tmp_path_factory.mktemp("glibc"), "glibc", src)


def _kernel_source_value(name: str) -> int | None:
    """A ``#define NAME number`` in the 6.12 kernel source's UAPI headers, or None."""
    files = ["include/uapi/asm-generic/mman-common.h", "include/uapi/asm-generic/mman.h",
             "include/uapi/linux/mman.h", "arch/x86/include/uapi/asm/mman.h", "include/uapi/linux/memfd.h",
             "include/uapi/linux/pidfd.h"]
    for rel in files:
        path = KSRC / rel
        if path.exists():
            m = re.search(rf"^#define\s+{name}\s+(-?(?:0x[0-9a-fA-F]+|\d+))U?\b", path.read_text(), re.M)
            if m:
                return int(m.group(1), 0)
    return None


# --------------------------------------------------------------------------------------------------


class TestValues:
    @pytest.mark.parametrize("name", ALL_CONSTANTS)
    def test_importable_with_the_header_value(self, name: str, uapi: dict[str, int | None],
                                              glibc: dict[str, int | None]) -> None:
        """vmkit.NAME equals the C headers' NAME where they define it (include/uapi/.../mman*.h, glibc)."""
        value = getattr(vmkit, name)
        c_values = {src: v for src, v in (("uapi", uapi.get(name)), ("glibc", glibc.get(name))) if v is not None}
        if name == "MAP_FAILED":  # (void *) -1, read back as an unsigned 64-bit address
            c_values = {src: v % (1 << 64) for src, v in c_values.items()}
        if c_values:
            assert set(c_values.values()) == {value}, c_values
        elif name == "PROT_SAO":
            assert value == 0x10  # the PowerPC value: see test_prot_sao_is_powerpcs_value
        else:
            assert name in MACHINE_FACTS or _kernel_source_value(name) is not None, f"{name}: no reference value"

    @pytest.mark.parametrize("name", sorted(MACHINE_FACTS))
    def test_newer_constants_match_machine_facts(self, name: str, uapi: dict[str, int | None]) -> None:
        """Post-6.1 constants have the numbers machine-facts §2/§13 record (mm/madvise.c, kernel/pid.c)."""
        assert uapi.get(name) is None  # really absent from the 6.1 headers: else the test above applies
        assert getattr(vmkit, name) == MACHINE_FACTS[name]
        source = _kernel_source_value(name)
        if source is not None:
            assert source == MACHINE_FACTS[name]

    @pytest.mark.parametrize("name", ["MFD_NOEXEC_SEAL", "MFD_EXEC", "MAP_DROPPABLE", "MAP_ABOVE4G"])
    def test_newer_constants_match_the_612_source(self, name: str, uapi: dict[str, int | None]) -> None:
        """Constants added after 6.1 match the 6.12 source UAPI text (include/uapi/linux/memfd.h, mman headers)."""
        if not KSRC.exists():
            pytest.skip("no kernel source in /usr/src/linux-source-6.12")
        assert uapi.get(name) is None
        assert getattr(vmkit, name) == _kernel_source_value(name)

    def test_absent_from_headers_are_exactly_the_newer_ones(self, uapi: dict[str, int | None],
                                                            glibc: dict[str, int | None]) -> None:
        """The 6.1 headers lack just the post-6.1 constants (guards, droppable, above4g, memfd exec)."""
        absent = {n for n in ALL_CONSTANTS if uapi.get(n) is None and glibc.get(n) is None}
        assert absent == {"MADV_GUARD_INSTALL", "MADV_GUARD_REMOVE", "MAP_DROPPABLE", "MAP_ABOVE4G",
                          "MFD_NOEXEC_SEAL", "MFD_EXEC", "PROT_SAO"}

    def test_prot_sao_is_powerpcs_value(self) -> None:
        """PROT_SAO is 0x10, PowerPC's value; x86-64 mprotect rejects it with EINVAL (arch_validate_prot)."""
        assert vmkit.PROT_SAO == 0x10 and "EINVAL" in (vmkit.PROT_SAO.__doc__ or "")
        ppc = KSRC / "arch/powerpc/include/uapi/asm/mman.h"
        if ppc.exists():
            m = re.search(r"^#define\s+PROT_SAO\s+(0x[0-9a-fA-F]+)", ppc.read_text(), re.M)
            assert m is not None and int(m.group(1), 0) == 0x10
        with native.Mapping(PAGE) as m2:
            with pytest.raises(OSError) as e:
                m2.protect(vmkit.PROT_READ | vmkit.PROT_SAO)
            assert e.value.errno == errno.EINVAL

    @pytest.mark.parametrize("name", HUGE_SIZES)
    def test_map_huge_encodes_log2_of_the_size(self, name: str) -> None:
        """MAP_HUGE_<size> is log2(size) << MAP_HUGE_SHIFT (include/uapi/asm-generic/hugetlb_encode.h)."""
        size = int(name[9:-2]) << {"KB": 10, "MB": 20, "GB": 30}[name[-2:]]
        value = getattr(vmkit, name)
        assert value == int(math.log2(size)) << vmkit.MAP_HUGE_SHIFT
        assert (value >> vmkit.MAP_HUGE_SHIFT) & vmkit.MAP_HUGE_MASK == int(math.log2(size))

    def test_page_size(self, glibc: dict[str, int | None]) -> None:
        """PAGE_SIZE is 4096, as sysconf, mmap and resource report (arch/x86/include/asm/page_types.h)."""
        assert vmkit.PAGE_SIZE == 4096 == glibc["PAGE_SIZE"]
        assert vmkit.PAGE_SIZE == pymmap.PAGESIZE == os.sysconf("SC_PAGE_SIZE") == resource.getpagesize()

    def test_map_failed_and_map_anon(self) -> None:
        """MAP_FAILED is (void *)-1 and MAP_ANON aliases MAP_ANONYMOUS (include/uapi/asm-generic/mman-common.h)."""
        assert vmkit.MAP_FAILED == 2**64 - 1
        assert vmkit.MAP_ANON is vmkit.MAP_ANONYMOUS

    def test_task_size_is_the_user_address_limit(self) -> None:
        """TASK_SIZE is 2**47 - 4096: munmap beyond it is EINVAL, mmap there ENOMEM (mm/vma.c do_vmi_munmap)."""
        assert vmkit.TASK_SIZE == (1 << 47) - PAGE
        for addr, length in ((vmkit.TASK_SIZE, PAGE), (vmkit.TASK_SIZE - PAGE, 2 * PAGE)):
            with pytest.raises(OSError) as e:
                native.munmap(addr, length)
            assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            native.mmap(vmkit.TASK_SIZE, PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED_NOREPLACE)
        assert e.value.errno == errno.ENOMEM


class TestNewerConstantsOnTheKernel:
    """The post-6.1 numbers are not just written down: the running 6.18 kernel honours them."""

    def test_guard_install_and_remove(self) -> None:
        """MADV_GUARD_INSTALL=102 / REMOVE=103 install and lift a guard (mm/madvise.c madvise_guard_install)."""
        with native.Mapping(2 * PAGE) as m:
            m[0] = 1
            m.advise(vmkit.MADV_GUARD_INSTALL, 0, PAGE)
            with pytest.raises(OSError) as e:
                m[0]
            assert e.value.errno == errno.EFAULT
            m.advise(vmkit.MADV_GUARD_REMOVE, 0, PAGE)
            assert m[0] == 0

    def test_dontneed_locked(self) -> None:
        """MADV_DONTNEED_LOCKED=24 zaps a locked range that DONTNEED refuses (mm/madvise.c madvise_dontneed_free)."""
        with native.Mapping(PAGE) as m:
            m[0] = 7
            m.lock()
            with pytest.raises(OSError) as e:
                m.advise(vmkit.MADV_DONTNEED)
            assert e.value.errno == errno.EINVAL
            m.advise(vmkit.MADV_DONTNEED_LOCKED)
            assert m[0] == 0

    def test_map_droppable(self) -> None:
        """MAP_DROPPABLE=0x08 is a mapping type of its own, VmFlags dp (mm/mmap.c do_mmap)."""
        with native.Mapping(PAGE, RW, vmkit.MAP_DROPPABLE | vmkit.MAP_ANONYMOUS) as m:
            assert {"dp", "wf"} <= vm_flags(_Self(), m.address)  # type: ignore[arg-type]

    def test_map_above4g(self) -> None:
        """MAP_ABOVE4G=0x80 is accepted, and MAP_32BIT wins over it (arch/x86/kernel/sys_x86_64.c)."""
        with native.Mapping(PAGE, RW, PRIVATE_ANON | vmkit.MAP_ABOVE4G) as m:
            assert m.address >= 1 << 32
        with native.Mapping(PAGE, RW, PRIVATE_ANON | vmkit.MAP_ABOVE4G | vmkit.MAP_32BIT) as m:
            assert m.address < 1 << 31

    def test_pidfd_self_pseudo_descriptors(self) -> None:
        """PIDFD_SELF_THREAD=-10000 / _GROUP=-10001 name the caller in process_madvise (kernel/pid.c pidfd_get_task)."""
        with native.Mapping(PAGE) as m:
            for fd in (vmkit.PIDFD_SELF_THREAD, vmkit.PIDFD_SELF_THREAD_GROUP):
                assert native.process_madvise(fd, [(m.address, PAGE)], vmkit.MADV_COLD) == PAGE
            with pytest.raises(OSError) as e:
                native.process_madvise(-10002, [(m.address, PAGE)], vmkit.MADV_COLD)
            assert e.value.errno == errno.EBADF

    def test_memfd_noexec_seal(self) -> None:
        """MFD_NOEXEC_SEAL=8 makes a non-executable memfd, MFD_EXEC=0x10 an executable one (mm/memfd.c)."""
        fd1 = native.memfd_create("noexec", vmkit.MFD_NOEXEC_SEAL)
        fd2 = native.memfd_create("exec", vmkit.MFD_EXEC)
        try:
            assert os.fstat(fd1).st_mode & 0o111 == 0
            assert os.fstat(fd2).st_mode & 0o111 == 0o111
        finally:
            os.close(fd1)
            os.close(fd2)


class _Self:
    def smaps(self) -> str:
        with open("/proc/self/smaps") as f:
            return f.read()


class TestEnums:
    @pytest.mark.parametrize("name", ALL_CONSTANTS)
    def test_member_of_the_right_enum(self, name: str) -> None:
        """Each constant is a member of its enum class (vmkit.flags), named by its C name."""
        if name in NOT_ENUM_MEMBERS:
            assert isinstance(getattr(vmkit, name), int)
            return
        cls, kind = next(v for prefix, v in ENUM_OF_PREFIX.items() if name.startswith(prefix))
        member = getattr(vmkit, name)
        assert type(member) is cls and issubclass(cls, kind)
        assert cls[name] is member and member.name == name
        assert isinstance(member, int)

    def test_every_member_is_exported(self) -> None:
        """Every enum member is bound at vmkit top level and listed in __all__ (vmkit.__init__)."""
        for cls in vmkit.flags.EXPORTED_ENUMS:
            for name, member in cls.__members__.items():
                assert getattr(vmkit, name) is member
                assert name in vmkit.__all__

    @pytest.mark.parametrize(("value", "text"), [
        (vmkit.PROT_READ, "<Prot.PROT_READ: 1>"),
        (vmkit.PROT_NONE, "<Prot.PROT_NONE: 0>"),
        (vmkit.PROT_READ | vmkit.PROT_WRITE, "<Prot.PROT_READ|PROT_WRITE: 3>"),
        (vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS, "<Map.MAP_PRIVATE|MAP_ANONYMOUS: 34>"),
        (vmkit.MAP_SHARED_VALIDATE, "<Map.MAP_SHARED_VALIDATE: 3>"),
        (vmkit.MAP_FIXED_NOREPLACE, "<Map.MAP_FIXED_NOREPLACE: 1048576>"),
        (vmkit.MAP_HUGE_2MB, "<MapHuge.MAP_HUGE_2MB: 1409286144>"),
        (vmkit.MAP_HUGETLB | vmkit.MAP_HUGE_2MB, "<Map.MAP_HUGETLB|MAP_HUGE_2MB: 1409548288>"),
        (vmkit.MAP_HUGE_1GB | vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_HUGETLB,
         "<Map.MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_1GB: 2013528098>"),
        (vmkit.MAP_PRIVATE | vmkit.MAP_UNINITIALIZED, "<Map.MAP_PRIVATE|MAP_UNINITIALIZED: 67108866>"),
        (vmkit.MREMAP_MAYMOVE | vmkit.MREMAP_DONTUNMAP, "<MRemap.MREMAP_MAYMOVE|MREMAP_DONTUNMAP: 5>"),
        (vmkit.MS_SYNC | vmkit.MS_INVALIDATE, "<MS.MS_INVALIDATE|MS_SYNC: 6>"),
        (vmkit.MADV_GUARD_INSTALL, "<Madv.MADV_GUARD_INSTALL: 102>"),
        (vmkit.MADV_COLLAPSE, "<Madv.MADV_COLLAPSE: 25>"),
        (vmkit.MLOCK_ONFAULT, "<MLock.MLOCK_ONFAULT: 1>"),
        (vmkit.MCL_CURRENT | vmkit.MCL_ONFAULT, "<MCL.MCL_CURRENT|MCL_ONFAULT: 5>"),
        (vmkit.SEGV_ACCERR, "<SegvCode.SEGV_ACCERR: 2>"),
        (vmkit.BUS_ADRERR, "<BusCode.BUS_ADRERR: 2>"),
    ], ids=lambda v: v if isinstance(v, str) else None)
    def test_repr_is_by_name(self, value: enum.Enum, text: str) -> None:
        """Constants and their combinations print by C name (enum.IntFlag/IntEnum __repr__)."""
        assert repr(value) == text

    def test_values_stay_plain_ints_for_the_kernel(self) -> None:
        """Members compare, hash and format as ints, so they pass straight to ctypes (enum.IntFlag)."""
        assert vmkit.PROT_READ | vmkit.PROT_WRITE == 3 and f"{vmkit.MADV_COLD:d}" == "20"
        assert {vmkit.MADV_DONTNEED: "x"}[4] == "x"
        assert vmkit.Madv(102) is vmkit.MADV_GUARD_INSTALL
        with pytest.raises(ValueError):
            vmkit.Madv(5)


class TestErrors:
    @pytest.mark.parametrize(("err", "cls"), [
        (errno.EINVAL, OSError), (errno.ENOMEM, OSError), (errno.EFAULT, OSError), (errno.EBADF, OSError),
        (errno.EBUSY, OSError), (errno.EOPNOTSUPP, OSError), (errno.EPERM, PermissionError),
        (errno.EACCES, PermissionError), (errno.EEXIST, FileExistsError), (errno.ESRCH, ProcessLookupError),
        (errno.EAGAIN, BlockingIOError), (errno.EINTR, InterruptedError), (errno.ENOENT, FileNotFoundError),
    ], ids=lambda v: errno.errorcode[v] if isinstance(v, int) else v.__name__)
    def test_os_error_picks_the_os_subclass(self, err: int, cls: type[OSError]) -> None:
        """os_error builds the OSError subclass Python's os module would (vmkit.errors.os_error)."""
        e = os_error(err)
        assert type(e) is cls and e.errno == err and e.strerror == os.strerror(err)
        assert "detail" in str(os_error(err, "detail"))

    def test_real_einval(self) -> None:
        """munmap(1, 4096) raises a plain OSError with errno EINVAL (mm/vma.c do_vmi_munmap)."""
        with pytest.raises(OSError) as e:
            native.munmap(1, 4096)
        assert type(e.value) is OSError
        assert e.value.errno == errno.EINVAL
        assert str(e.value) == "[Errno 22] Invalid argument"

    def test_real_eexist_and_esrch(self) -> None:
        """EEXIST is FileExistsError (MAP_FIXED_NOREPLACE), ESRCH ProcessLookupError (kernel/pid.c)."""
        with native.Mapping(PAGE) as m:
            with pytest.raises(FileExistsError) as e:
                native.mmap(m.address, PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED_NOREPLACE)
            assert e.value.errno == errno.EEXIST
        with pytest.raises(ProcessLookupError) as e2:
            native.pidfd_open(1 << 30)
        assert e2.value.errno == errno.ESRCH

    def test_errors_are_never_return_values(self) -> None:
        """No wrapper returns -1 or MAP_FAILED: mmap failing raises (vmkit.native.calls)."""
        with pytest.raises(OSError):
            native.mmap(None, 0, RW, PRIVATE_ANON)

    def test_process_gone(self) -> None:
        """ProcessGone is a ChildProcessError carrying ESRCH (vmkit.errors)."""
        e = vmkit.ProcessGone("gone")
        assert isinstance(e, ChildProcessError) and e.errno == errno.ESRCH


class TestFaults:
    @pytest.mark.parametrize(("cls", "code", "signo", "text"), [
        (vmkit.SegmentationFault, vmkit.SEGV_MAPERR, signal.SIGSEGV, "SIGSEGV SEGV_MAPERR at 0x1000"),
        (vmkit.SegmentationFault, vmkit.SEGV_ACCERR, signal.SIGSEGV, "SIGSEGV SEGV_ACCERR at 0x1000"),
        (vmkit.SegmentationFault, 99, signal.SIGSEGV, "SIGSEGV code 99 at 0x1000"),
        (vmkit.BusError, vmkit.BUS_ADRERR, signal.SIGBUS, "SIGBUS BUS_ADRERR at 0x1000"),
        (vmkit.BusError, vmkit.BUS_OBJERR, signal.SIGBUS, "SIGBUS BUS_OBJERR at 0x1000"),
    ])
    def test_fault_fields_text_and_pickling(self, cls: type[vmkit.Fault], code: int, signo: int,
                                            text: str) -> None:
        """A Fault carries addr, si_code and signo, prints them, pickles and compares (vmkit.errors)."""
        f = cls(0x1000, code)
        assert (f.addr, f.code, f.signo) == (0x1000, code, signo)
        assert str(f) == text
        assert isinstance(f, vmkit.Fault) and not isinstance(f, OSError)
        for g in (pickle.loads(pickle.dumps(f)), copy.copy(f), copy.deepcopy(f)):
            assert type(g) is cls and g == f and (g.addr, g.code, str(g)) == (0x1000, code, text)
        assert hash(f) == hash(cls(0x1000, code)) and f != cls(0x2000, code)

    def test_fault_for(self) -> None:
        """fault_for maps SIGSEGV/SIGBUS to the classes and refuses other signals (vmkit.errors)."""
        assert fault_for(signal.SIGSEGV, 8, 1) == vmkit.SegmentationFault(8, 1)
        assert fault_for(signal.SIGBUS, 8, 2) == vmkit.BusError(8, 2)
        with pytest.raises(ValueError):
            fault_for(signal.SIGTERM, 8, 1)

    def test_real_faults_from_a_child_pickle(self, tmp_path: Path) -> None:
        """Real SEGV_MAPERR/ACCERR and SIGBUS past EOF survive pickling (arch/x86/mm/fault.c, mm/filemap.c)."""
        with native.spawn() as p:
            fd = p.memfd_create("empty")
            b = p.mmap(None, PAGE, vmkit.PROT_READ, vmkit.MAP_SHARED, fd)
            a = p.mmap(None, 2 * PAGE, vmkit.PROT_READ, PRIVATE_ANON)
            p.munmap(a + PAGE, PAGE)
            faults = []
            cases = [(lambda: p.read(a + PAGE, 1), vmkit.SegmentationFault(a + PAGE, vmkit.SEGV_MAPERR)),
                     (lambda: p.write(a, b"x"), vmkit.SegmentationFault(a, vmkit.SEGV_ACCERR)),
                     (lambda: p.read(b, 1), vmkit.BusError(b, vmkit.BUS_ADRERR))]
            for access, expected in cases:
                with pytest.raises(vmkit.Fault) as e:
                    access()
                assert e.value == expected
                faults.append(e.value)
            assert pickle.loads(pickle.dumps(faults)) == faults


class TestExports:
    #: The Process members of api.md's table, with their parameters as api.md writes them.
    API_MEMBERS = {
        "mmap": "addr, length, prot, flags, fd=-1, offset=0",
        "mremap": "old_address, old_size, new_size, flags=0, new_address=None",
        "munmap": "addr, length", "mprotect": "addr, length, prot", "msync": "addr, length, flags",
        "madvise": "addr, length, advice", "mincore": "addr, length",
        "mlock": "addr, length", "mlock2": "addr, length, flags=0", "munlock": "addr, length",
        "mlockall": "flags", "munlockall": "", "brk": "addr",
        "process_vm_readv": "pid, local_iov, remote_iov, flags=0",
        "process_vm_writev": "pid, local_iov, remote_iov, flags=0",
        "process_madvise": "pidfd, iov, advice, flags=0", "process_mrelease": "pidfd, flags=0",
        "read": "addr, n", "write": "addr, data", "maps": "", "fork": "",
        "open": "path, flags, mode=0o600", "close": "fd", "ftruncate": "fd, length", "pread": "fd, n, offset",
        "pwrite": "fd, data, offset", "mkdir": "path, mode=0o700", "unlink": "path",
        "memfd_create": "name, flags=0", "pidfd_open": "pid", "kill": "sig", "wait": "",
        "getrlimit": "res", "setrlimit": "res, limits", "setresuid": "r, e, s",
    }
    #: The Process members the brief adds beyond api.md's table.
    MORE_MEMBERS = ["capabilities", "smaps", "status", "setresgid", "dumpable", "drop_privileges",
                    "terminate", "__enter__", "__exit__"]
    TOP_LEVEL = ["Prot", "Map", "MRemap", "MS", "Madv", "MLock", "MCL", "MFD", "SegvCode", "BusCode",
                 "PAGE_SIZE", "Fault", "SegmentationFault", "BusError", "ProcessGone", "Process",
                 "TASK_SIZE", "IOV_MAX", "MAP_ANON", "MAP_FAILED", "PIDFD_SELF_THREAD",
                 "PIDFD_SELF_THREAD_GROUP"]
    IN_PROCESS = ["mmap", "mremap", "munmap", "mprotect", "msync", "madvise", "mincore", "mlock", "mlock2",
                  "munlock", "mlockall", "munlockall", "brk", "process_vm_readv", "process_vm_writev",
                  "process_madvise", "process_mrelease", "pidfd_open", "memfd_create", "read", "write",
                  "read_process", "write_process", "address_of", "maps", "spawn", "Mapping", "NativeProcess"]

    @staticmethod
    def _public(module: types.ModuleType) -> set[str]:
        return {n for n in dir(module) if not n.startswith("_")
                and not isinstance(getattr(module, n), (types.ModuleType, __future__._Feature))}

    @pytest.mark.parametrize("module", [vmkit, native], ids=lambda m: m.__name__)
    def test_all_is_exact(self, module: types.ModuleType) -> None:
        """__all__ lists every public name once, and each exists (trio-style export check)."""
        assert len(module.__all__) == len(set(module.__all__))
        assert all(hasattr(module, n) for n in module.__all__)
        assert self._public(module) == set(module.__all__)

    def test_top_level_names(self) -> None:
        """api.md's top-level names exist on vmkit (spec/api.md, Constants and Errors)."""
        for name in self.TOP_LEVEL:
            assert name in vmkit.__all__, name
        assert issubclass(vmkit.SegmentationFault, vmkit.Fault) and issubclass(vmkit.BusError, vmkit.Fault)

    def test_in_process_names(self) -> None:
        """vmkit.native offers every call as a module-level function (spec/api.md, Processes)."""
        for name in self.IN_PROCESS:
            assert name in native.__all__, name
        assert inspect.signature(native.spawn).parameters["aslr"].default is False

    @pytest.mark.parametrize("cls", [Process, NativeProcess], ids=lambda c: c.__name__)
    def test_process_members_and_signatures(self, cls: type) -> None:
        """Process and NativeProcess have every api.md member with its parameters (spec/api.md table)."""
        for name, params in self.API_MEMBERS.items():
            sig = inspect.signature(getattr(cls, name))
            got = ", ".join(p.name if p.default is inspect.Parameter.empty else
                            f"{p.name}={p.default!r}".replace("=384", "=0o600").replace("=448", "=0o700")
                            for p in list(sig.parameters.values())[1:])
            assert got == params, name
        for name in self.MORE_MEMBERS:
            assert hasattr(cls, name), name
        assert "pid" in Process.__annotations__

    def test_pid_of_a_native_process(self) -> None:
        """A NativeProcess's pid is its real pid, alive while the with block lasts (spec/api.md)."""
        with native.spawn() as p:
            assert isinstance(p.pid, int) and os.path.exists(f"/proc/{p.pid}")

    def test_native_process_is_concrete(self) -> None:
        """NativeProcess implements every abstract member of Process (abc)."""
        assert issubclass(NativeProcess, Process)
        assert not NativeProcess.__abstractmethods__

    def test_module_functions_match_the_process_signatures(self) -> None:
        """The in-process calls take the Process parameters, plus optional extras (vmkit.native.calls)."""
        for name in ("mmap", "mremap", "munmap", "mprotect", "msync", "madvise", "mincore", "mlock", "mlock2",
                     "munlock", "mlockall", "munlockall", "brk", "process_vm_readv", "process_vm_writev",
                     "process_madvise", "process_mrelease", "pidfd_open", "memfd_create", "read", "write"):
            mine = list(inspect.signature(getattr(native, name)).parameters.values())
            theirs = list(inspect.signature(getattr(Process, name)).parameters.values())[1:]
            assert [p.name for p in mine[:len(theirs)]] == [p.name for p in theirs], name
            assert all(p.default is not inspect.Parameter.empty for p in mine[len(theirs):]), name

    def test_spec_documents_match_these_lists(self) -> None:
        """The lists above are api.md's table and the seed's constants, as written in /work/shared/spec."""
        if not (SPEC / "api.md").exists() or not (SPEC / "seed-memory-syscalls.md").exists():
            pytest.skip("the spec documents are not on this machine")
        api = (SPEC / "api.md").read_text()
        table = [line.split("|")[1] for line in api.splitlines() if line.startswith("| `")]
        documented = {m for cell in table for m in re.findall(r"`(\w+)", cell)}
        assert documented == set(self.API_MEMBERS) | {"pid", "capabilities"}
        for name in re.findall(r"`vmkit\.([A-Za-z_0-9]+)`", api):
            assert name in ("native", "sim") or hasattr(vmkit, name), name
        seed = (SPEC / "seed-memory-syscalls.md").read_text()
        named = {n for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", seed)
                 if n.startswith(("PROT_", "MAP_", "MREMAP_", "MS_", "MADV_", "MLOCK_", "MCL_"))}
        assert named - set(SEED_CONSTANTS) == set()

