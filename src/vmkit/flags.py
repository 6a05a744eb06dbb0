"""Constants of the Linux x86-64 memory-management ABI, shared by every backend.

Every value is the one in the kernel's UAPI headers (``include/uapi/asm-generic/mman-common.h``,
``include/uapi/linux/mman.h``, ``arch/x86/include/uapi/asm/mman.h``) as of Linux 6.18.  Constants that
the machines' 6.1 headers lack (MADV_GUARD_INSTALL/REMOVE, MAP_DROPPABLE, MAP_ABOVE4G) are defined
here all the same: the 6.18 kernel accepts them.

They are members of :class:`enum.IntFlag` / :class:`enum.IntEnum` classes so they print by name, and
``vmkit`` re-exports every member under its C name (``vmkit.PROT_READ``...).  The hugetlb page-size
encodings (``MAP_HUGE_2MB``...) are values of a 6-bit field, not bits, so they live in :class:`MapHuge`
and a combination such as ``MAP_HUGETLB | MAP_HUGE_2MB`` prints as ``Map.MAP_HUGETLB|MAP_HUGE_2MB``.
"""

from __future__ import annotations

import enum
from typing import Any

PAGE_SIZE = 4096
PAGE_SHIFT = 12
PAGE_MASK = ~(PAGE_SIZE - 1)

#: ``TASK_SIZE`` with 4-level paging (``arch/x86/include/asm/page_64_types.h``).
TASK_SIZE = (1 << 47) - PAGE_SIZE


class Prot(enum.IntFlag):
    """``prot`` bits of mmap/mprotect (``PROT_*``).

    PROT_SAO is the PowerPC value, defined because the seed names it; x86-64 rejects it (EINVAL).
    """

    PROT_NONE = 0x0
    PROT_READ = 0x1
    PROT_WRITE = 0x2
    PROT_EXEC = 0x4
    PROT_SEM = 0x8
    PROT_SAO = 0x10  # PowerPC only: see _PROT_SAO_DOC
    PROT_GROWSDOWN = 0x01000000
    PROT_GROWSUP = 0x02000000


#: ``MAP_HUGE_SHIFT`` / ``MAP_HUGE_MASK``: the hugetlb size is ``(flags >> 26) & 0x3f`` (log2 bytes).
MAP_HUGE_SHIFT = 26
MAP_HUGE_MASK = 0x3F
_HUGE_FIELD = MAP_HUGE_MASK << MAP_HUGE_SHIFT


_PROT_SAO_DOC = """PROT_SAO = 0x10: Strong Access Ordering, the PowerPC value (arch/powerpc/include/uapi/asm/mman.h).

No x86-64 header defines it and x86-64 has no such bit: on x86-64, mprotect (and mmap) with 0x10 in
``prot`` fail with EINVAL (``arch_validate_prot`` allows only READ|WRITE|EXEC|SEM), as the tests show.
"""
Prot.PROT_SAO.__doc__ = _PROT_SAO_DOC


class Map(enum.IntFlag):
    """``flags`` of mmap (``MAP_*``): single-bit flags, plus the MAP_TYPE values.

    The hugetlb size field (bits 26-31) holds :class:`MapHuge` values; a combination whose field is
    one of them prints it by name (``<Map.MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB: ...>``)
    instead of decomposing it into bits.  Bit 26 alone is MAP_UNINITIALIZED, as in the kernel headers.
    """

    MAP_SHARED = 0x01
    MAP_PRIVATE = 0x02
    MAP_SHARED_VALIDATE = 0x03
    MAP_DROPPABLE = 0x08
    MAP_TYPE = 0x0F
    MAP_FIXED = 0x10
    MAP_ANONYMOUS = 0x20
    MAP_32BIT = 0x40
    MAP_ABOVE4G = 0x80
    MAP_GROWSDOWN = 0x0100
    MAP_DENYWRITE = 0x0800
    MAP_EXECUTABLE = 0x1000
    MAP_LOCKED = 0x2000
    MAP_NORESERVE = 0x4000
    MAP_POPULATE = 0x8000
    MAP_NONBLOCK = 0x10000
    MAP_STACK = 0x20000
    MAP_HUGETLB = 0x40000
    MAP_SYNC = 0x80000
    MAP_FIXED_NOREPLACE = 0x100000
    MAP_UNINITIALIZED = 0x4000000

    @classmethod
    def _missing_(cls, value: Any) -> Any:
        member = super()._missing_(value)
        field = value & _HUGE_FIELD if isinstance(value, int) else 0
        if field and field != cls.MAP_UNINITIALIZED:  # a size field, not just bit 26
            huge = MapHuge._value2member_map_.get(field)
            rest = value & ~_HUGE_FIELD
            names = [] if rest == 0 else [cls(rest)._name_ or f"{rest:#x}"]
            member._name_ = "|".join([*names, huge._name_ if huge is not None else f"{field:#x}"])
        return member


class MapHuge(enum.IntEnum):
    """The hugetlb page-size encodings of mmap (``MAP_HUGE_*``): ``log2(size) << MAP_HUGE_SHIFT``.

    Values of the size field, not flags.  ``|`` with a :class:`Map` (either side) or an int gives a
    :class:`Map` (a plain int for the kernel) that prints the size by name.
    """

    MAP_HUGE_16KB = 14 << 26
    MAP_HUGE_64KB = 16 << 26
    MAP_HUGE_512KB = 19 << 26
    MAP_HUGE_1MB = 20 << 26
    MAP_HUGE_2MB = 21 << 26
    MAP_HUGE_8MB = 23 << 26
    MAP_HUGE_16MB = 24 << 26
    MAP_HUGE_32MB = 25 << 26
    MAP_HUGE_256MB = 28 << 26
    MAP_HUGE_512MB = 29 << 26
    MAP_HUGE_1GB = 30 << 26
    MAP_HUGE_2GB = 31 << 26
    MAP_HUGE_16GB = 34 << 26

    def __or__(self, other: Any) -> Any:
        if isinstance(other, int):
            return Map(int(self) | int(other))
        return NotImplemented

    __ror__ = __or__


MAP_ANON = Map.MAP_ANONYMOUS
MAP_FAILED = (1 << 64) - 1


class MRemap(enum.IntFlag):
    """``flags`` of mremap (``MREMAP_*``)."""

    MREMAP_MAYMOVE = 1
    MREMAP_FIXED = 2
    MREMAP_DONTUNMAP = 4


class MS(enum.IntFlag):
    """``flags`` of msync (``MS_*``)."""

    MS_ASYNC = 1
    MS_INVALIDATE = 2
    MS_SYNC = 4


class Madv(enum.IntEnum):
    """``advice`` of madvise / process_madvise (``MADV_*``)."""

    MADV_NORMAL = 0
    MADV_RANDOM = 1
    MADV_SEQUENTIAL = 2
    MADV_WILLNEED = 3
    MADV_DONTNEED = 4
    MADV_FREE = 8
    MADV_REMOVE = 9
    MADV_DONTFORK = 10
    MADV_DOFORK = 11
    MADV_MERGEABLE = 12
    MADV_UNMERGEABLE = 13
    MADV_HUGEPAGE = 14
    MADV_NOHUGEPAGE = 15
    MADV_DONTDUMP = 16
    MADV_DODUMP = 17
    MADV_WIPEONFORK = 18
    MADV_KEEPONFORK = 19
    MADV_COLD = 20
    MADV_PAGEOUT = 21
    MADV_POPULATE_READ = 22
    MADV_POPULATE_WRITE = 23
    MADV_DONTNEED_LOCKED = 24
    MADV_COLLAPSE = 25
    MADV_HWPOISON = 100
    MADV_SOFT_OFFLINE = 101
    MADV_GUARD_INSTALL = 102
    MADV_GUARD_REMOVE = 103


class MLock(enum.IntFlag):
    """``flags`` of mlock2 (``MLOCK_*``)."""

    MLOCK_ONFAULT = 1


class MCL(enum.IntFlag):
    """``flags`` of mlockall (``MCL_*``)."""

    MCL_CURRENT = 1
    MCL_FUTURE = 2
    MCL_ONFAULT = 4


class MFD(enum.IntFlag):
    """``flags`` of memfd_create (``MFD_*``)."""

    MFD_CLOEXEC = 0x1
    MFD_ALLOW_SEALING = 0x2
    MFD_HUGETLB = 0x4
    MFD_NOEXEC_SEAL = 0x8
    MFD_EXEC = 0x10


class SegvCode(enum.IntEnum):
    """``si_code`` values of SIGSEGV (``include/uapi/asm-generic/siginfo.h``)."""

    SEGV_MAPERR = 1
    SEGV_ACCERR = 2
    SEGV_BNDERR = 3
    SEGV_PKUERR = 4


class BusCode(enum.IntEnum):
    """``si_code`` values of SIGBUS."""

    BUS_ADRALN = 1
    BUS_ADRERR = 2
    BUS_OBJERR = 3
    BUS_MCEERR_AR = 4
    BUS_MCEERR_AO = 5


#: ``process_madvise`` pseudo-pidfds meaning "the calling thread / thread group" (Linux 6.13+).
PIDFD_SELF_THREAD = -10000
PIDFD_SELF_THREAD_GROUP = -10001

#: ``IOV_MAX`` / ``UIO_MAXIOV``.
IOV_MAX = 1024

#: Capability names by bit number (``include/uapi/linux/capability.h``).
CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
    "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)


def caps_to_mask(names: frozenset[str] | set[str]) -> int:
    """Turns capability names into the kernel's bit mask; unknown names raise ValueError."""
    mask = 0
    for name in names:
        try:
            mask |= 1 << CAPABILITIES.index(name)
        except ValueError:
            raise ValueError(f"unknown capability {name!r}") from None
    return mask


def mask_to_caps(mask: int) -> frozenset[str]:
    """Turns a capability bit mask into the set of names."""
    return frozenset(name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1)


def page_align(n: int) -> int:
    """``PAGE_ALIGN``: rounds up to a page boundary (callers check overflow past 2**64)."""
    return (n + PAGE_SIZE - 1) & PAGE_MASK


#: Every enum class whose members ``vmkit`` re-exports under their C names.
EXPORTED_ENUMS: tuple[type[enum.Enum], ...] = (
    Prot, Map, MapHuge, MRemap, MS, Madv, MLock, MCL, MFD, SegvCode, BusCode,
)
