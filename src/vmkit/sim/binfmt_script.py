"""``#!`` scripts (fs/binfmt_script.c ``load_script``): the parse of the interpreter line.

exec (:mod:`vmkit.sim.exec`) then replaces argv[0] by the interpreter's name, its optional
argument and the script's path, and restarts with the interpreter.
"""

from __future__ import annotations

import errno

from vmkit.errors import os_error


def _spacetab(c: int) -> bool:
    return c in (0x20, 0x09)


def parse_script(buf: bytes) -> tuple[bytes, bytes | None] | None:
    """``load_script``'s parse of the ``#!`` line in the first BINPRM_BUF_SIZE bytes (NUL-padded):
    (interpreter, optional argument), None if this is no script, ENOEXEC if the line is unusable
    (only spaces, no name, or a name that may be truncated)."""
    if buf[:2] != b"#!":
        return None
    buf_end = len(buf) - 1
    i_end = buf.find(b"\n")
    if i_end < 0:
        first = next((i for i in range(2, buf_end) if not _spacetab(buf[i])), None)
        if first is None:
            raise os_error(errno.ENOEXEC)
        if not any(buf[i] in (0x20, 0x09, 0) for i in range(first, buf_end)):
            raise os_error(errno.ENOEXEC)
        i_end = buf_end
    while _spacetab(buf[i_end - 1]):
        i_end -= 1
    i_name = next((i for i in range(2, i_end) if not _spacetab(buf[i])), None)
    if i_name is None or i_name == i_end:
        raise os_error(errno.ENOEXEC)
    i_sep = next((i for i in range(i_name, i_end) if buf[i] in (0x20, 0x09, 0)), None)
    i_arg = None
    if i_sep is not None and buf[i_sep] != 0:
        i_arg = next((i for i in range(i_sep, i_end) if not _spacetab(buf[i])), None)
    name = buf[i_name:i_sep if i_sep is not None else i_end]
    arg = buf[i_arg:i_end].split(b"\0")[0] if i_arg is not None else None
    return name, arg


__all__ = ["parse_script"]
