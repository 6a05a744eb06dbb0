"""Normalisation and comparison of what the two backends show.

Everything is compared exactly except what cannot be equal between a real machine and the model:

* the inode field of file-backed and shmem maps lines, mapped through a first-seen bijection (the
  first nonzero inode seen in a text becomes ``I1``, the next new one ``I2``...), so "same file" and
  "different file" relations still have to agree;
* the device field of shmem/memfd lines (``/dev/zero (deleted)``, ``/memfd:...``, ``/SYSV...``), which
  depends on the host's internal shmem mount.

Lines whose inode is rewritten are re-padded the way ``show_map_vma`` pads (name at column 73).
"""

from __future__ import annotations

from vmkit.maps import MapsLine, parse_maps  # noqa: F401  (re-exported for the fuzzer)


import vmkit

#: The /proc/<pid>/status figures compared after every step.
STATUS_FIELDS = ("VmSize", "VmLck", "VmRSS", "VmData", "RssAnon", "RssFile", "RssShmem")
_SHMEM_NAMES = ("/dev/zero (deleted)", "/memfd:", "/SYSV", "/anon_hugepage")


def normalise_maps(text: str) -> str:
    """``text`` with inodes through a first-seen bijection and shmem devices replaced."""
    seen: dict[str, str] = {}
    out = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5 or fields[4] == "0":
            out.append(line)
            continue
        name = fields[5] if len(fields) > 5 else ""
        inode = seen.setdefault(fields[4], f"I{len(seen) + 1}")
        dev = "SHMEM" if name.startswith(_SHMEM_NAMES) else fields[3]
        head = f"{fields[0]} {fields[1]} {fields[2]} {dev} {inode} "
        out.append(head.ljust(73) + name if name else head)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def status_subset(status: dict[str, str]) -> dict[str, str | None]:
    """The compared status fields (``None`` for a missing one)."""
    return {key: status.get(key) for key in STATUS_FIELDS}


def outcome(call, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Runs ``call`` and returns a comparable outcome plus the raw value.

    ``("ok", value)``, ``("errno", n)``, ``("fault", class name, addr, code)``,
    ``("unimplemented", message)`` or ``("exception", class name, message)`` for anything else.
    """
    try:
        value = call(*args, **kwargs)
    except vmkit.Fault as fault:
        return ("fault", type(fault).__name__, fault.addr, fault.code), None
    except NotImplementedError as e:
        return ("unimplemented", str(e)), None
    except OSError as e:
        if isinstance(e, vmkit.ProcessGone):
            return ("exception", type(e).__name__, str(e)), None
        return ("errno", e.errno), None
    except Exception as e:  # noqa: BLE001 - any other exception is itself a finding
        return ("exception", type(e).__name__, str(e)), None
    if isinstance(value, vmkit.Process):
        return ("ok", "<process>"), value
    if isinstance(value, (bytes, bytearray)):
        return ("ok", bytes(value)), value
    return ("ok", value), value


def short(out: tuple) -> str:  # type: ignore[type-arg]
    """A one-line description of an outcome (long byte strings abridged)."""
    if out[0] == "ok" and isinstance(out[1], bytes) and len(out[1]) > 64:
        return f"ok <{len(out[1])} bytes, {out[1][:16]!r}...>"
    if out[0] == "ok" and isinstance(out[1], int) and out[1] > 4096:
        return f"ok {out[1]:#x}"
    if out[0] == "fault":
        return f"{out[1]} addr={out[2]:#x} code={out[3]}"
    if out[0] == "errno":
        import errno as _errno
        return f"OSError {_errno.errorcode.get(out[1], out[1])}"
    return " ".join(str(x) for x in out)


__all__ = ["MapsLine", "STATUS_FIELDS", "normalise_maps", "outcome", "parse_maps", "short",
           "status_subset"]
