"""Reading strace logs (strace 6.1) into events, for replaying real programs on the model.

The line shapes (strace's ``printleader``, ``printtrailer``, ``print_exited`` and friends):

- the leader (strace's ``printleader``): ``PID `` (``-f`` with ``-o``), ``[pid  N] `` (``-f`` to
  stderr once there are two tracees) or nothing, with ``--decode-pids=comm``'s ``<comm>``; then a
  ``-t`` (``HH:MM:SS``), ``-tt`` (``HH:MM:SS.micro``), ``-ttt`` (``epoch.micro``) or ``-r``
  (relative seconds) timestamp when present; ``-r`` after a ``-t`` time (``(+ 0.000123)``), ``-n``
  (``[  9]``) and ``-i`` (``[00007ffff7fe3d4b]``) are read and dropped;
- ``NAME(ARGS) = RESULT`` with ``RESULT`` one of ``0x7ffff7fc1000``, ``3``, ``022`` (octal: umask),
  ``3</etc/passwd>`` (``-y``), ``-1 ENOMEM (Cannot allocate memory)``, ``-1 (errno 528)`` (an errno
  strace cannot name: ``errno`` None, the text in ``result_note``), ``?``, ``? <unavailable>``,
  ``? ERESTARTSYS (To be restarted if SA_RESTART is set)``, ``0x8000 (flags O_RDONLY)``, any of
  them followed by ``(INJECTED)``-style notes; then ``<0.000012>`` (``<0>`` at ``-T`` precision
  ``s``) with ``-T`` (strace's ``syscall_exiting_trace``, ``print_err_ret``);
- ``NAME(ARGS <unfinished ...>`` and, later, ``<... NAME resumed>REST``: one call, yielded when it
  completes, its text joined; ``<unfinished ...>) = ?`` at the end of the arguments (the process
  died inside the call) and ``NAME(ARGS <detached ...>`` give an ``unfinished`` call;
- ``--- SIGCHLD {siginfo} ---`` and ``--- stopped by SIGSTOP ---``: :class:`Signal`;
- ``+++ exited with N +++``, ``+++ killed by SIGKILL (core dumped) +++``,
  ``+++ superseded by execve in pid N +++``: :class:`Exit`;
- ``strace: ...`` messages (not from the program): skipped, also when strace wrote one into the
  middle of a line on stderr (the line then continues on the next one);
- ``# ...``: our recorder's metadata, a :class:`Comment` event; blank lines are skipped.

Anything else is a :class:`TraceError` naming the file, line and column.

``pid`` is 0 on lines without a pid (a log of one process, or the lines strace wrote to stderr
while there was one tracee); :attr:`Trace.has_pids` tells whether the log had a pid column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from vmkit.trace.strace_values import (
    _SIMPLE_CACHE, Value, ValueSyntaxError, parse_args, parse_int, parse_value, simple_value,
)


class TraceError(ValueError):
    """Malformed input: ``str()`` is ``FILE:LINE[:COL]: what is wrong: <line>``."""

    def __init__(self, path: str | None, lineno: int, line: str, what: str, column: int | None = None) -> None:
        self.path = path
        self.lineno = lineno
        self.line = line
        self.what = what
        self.column = column
        where = f"{path or '<input>'}:{lineno}" + (f":{column}" if column is not None else "")
        super().__init__(f"{where}: {what}: {line}")


@dataclass(frozen=True)
class Syscall:
    """One system call, complete (or never completed: ``unfinished``).

    ``lineno`` is the line on which it completed, ``start_lineno`` the one on which it started;
    ``text`` is the call as strace printed it without the leader, joined across an
    unfinished/resumed pair. ``time`` is the timestamp of the start line, ``end_time`` that of the
    completing line. ``result_note`` is strace's text after the result: ``</etc/passwd>`` (``-y``),
    ``(No such file or directory)``, ``(flags O_RDONLY)``, ``<unavailable>``.

    ``unfinished=True`` (``result`` None, the arguments strace printed at entry only) when strace
    never showed the call complete: no resumed line before the process's exit or the end of the
    log, ``<detached ...>``, or ``<unfinished ...>) = ?`` (the process died inside the call,
    strace's ``print_event_exit``: ``read(0,  <unfinished ...>) = ?``).
    """

    pid: int
    name: str
    args: tuple[Value, ...]
    result: int | None
    errno: str | None
    lineno: int
    start_lineno: int
    text: str
    time: float | None = None
    duration: float | None = None
    result_note: str | None = None
    unfinished: bool = False
    end_time: float | None = None


@dataclass(frozen=True)
class Signal:
    """``--- SIGCHLD {si_signo=...} ---`` (``info`` is the parsed siginfo) or
    ``--- stopped by SIGSTOP ---`` (``stopped``)."""

    pid: int
    lineno: int
    name: str
    text: str
    info: Value = None
    stopped: bool = False
    time: float | None = None


@dataclass(frozen=True)
class Exit:
    """``+++ exited with N +++`` (``status``), ``+++ killed by SIG +++`` (``signal``,
    ``core_dumped``), or ``+++ superseded by execve in pid N +++`` (``superseded_by``: the thread
    whose execve replaced this thread group leader; its call completes under this pid)."""

    pid: int
    lineno: int
    status: int | None
    signal: str | None
    core_dumped: bool = False
    superseded_by: int | None = None
    text: str = ""
    time: float | None = None


@dataclass(frozen=True)
class Comment:
    """A ``#`` line (our recorder's metadata); ``text`` is what follows the ``#`` and its spaces."""

    lineno: int
    text: str


Event = Union[Syscall, Signal, Exit, Comment]

# printleader: "PID " or "[pid  PID] " (with --decode-pids=comm "PID<comm> "), then -t/-tt/-ttt, then
# -r ("(+ 0.000123) " after a -t time), -n ("[  9] ") and -i ("[00007f...] "), the last three ignored.
# (The lookahead skips the optional fields at once when the call's name follows the pid.)
_LEAD = (r"(?:(\d+)(?:<[^<>\n]*>)? +|\[pid +(\d+)(?:<[^<>\n]*>)?\] )?"
         r"(?:(?=[ \d(\[]) *(?:(\d+:\d\d:\d\d(?:\.\d+)?|\d+\.\d+) +)?"
         r"(?:\(\+ *\d+(?:\.\d+)?\) )?(?:\[ *\d+\] )?(?:\[(?:[0-9a-f]{16}|\?{16})\] )?)?")
# The fast path: a whole call on one line, arguments without strings, structs, lists or comments
# ('*' is excluded), each a number, a name, a|b|c or fd<path> (a path with ", " in it fails
# simple_value and takes the full grammar); a result with an errno or a -y path. strace escapes '<'
# and '>' in paths, so a ')' in a path cannot make this end the argument list early and still
# match to the end of the line. One regex runs over a whole block of lines (re's per-call cost is
# a third of the work): each match is one line, the fast form or, failing it, group 11 any line.
_FAST_LINE = (_LEAD + r"([a-z_][a-z0-9_]*)\(([^\"{}\[\]()=~@&*\n]*)\) += (-?(?:0x[0-9a-f]+|0|[1-9]\d*)|\?)"
              r"(?:(<[^<>\n]*>)|(?: (E[A-Z0-9_]+) (\([^()\n]*\))))?(?: <(\d+(?:\.\d+)?)>)?(?=\n)")
_BLOCK = re.compile(r"(?:" + _FAST_LINE + r"|([^\n]*))\n")
_BLOCK_SLOW = re.compile(r"(?:(?!)" + _FAST_LINE + r"|([^\n]*))\n")  # the same groups, never fast
_FRAME = re.compile(_LEAD)
_HEX = re.compile(r"0x[0-9a-f]+")  # an address: not cached (they rarely repeat)
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|\?\?\?)\(")
_RESULT = re.compile(r" *= (-?(?:0x[0-9a-fA-F]+|\d+)|\?)(?: (E[A-Z0-9_]+))?(<.*?>(?:\(deleted\))?| \(.*\)| <unavailable>)?"
                     r"(?: <(\d+(?:\.\d+)?)>)?$")
_RESUMED = re.compile(r"<\.\.\. ([A-Za-z_][A-Za-z0-9_]*|\?\?\?) resumed>")
_EXIT = re.compile(r"\+\+\+ (?:exited with (\d+)|killed by (SIG\w+)( \(core dumped\))?"
                   r"|superseded by execve in pid (\d+)) \+\+\+$")
_SIGNAL = re.compile(r"--- (?:stopped by (SIG\w+)|(SIG\w+)(?: (.*))?) ---$")
_MIDLINE_MESSAGE = re.compile(r"strace: Process \d+ (?:attached|detached|suspended)$")
_UNFINISHED = " <unfinished ...>"
_DETACHED = " <detached ...>"


def _timestamp(text: str | None) -> float | None:
    """Seconds: since midnight for ``-t``/``-tt``, since the epoch for ``-ttt``, since the previous
    line for ``-r``."""
    if text is None:
        return None
    if ":" in text:
        h, m, s = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    return float(text)


_T = TypeVar("_T")


def _new(cls: type[_T], fields: dict[str, Any]) -> _T:
    """A frozen dataclass instance without its ``__init__`` (which sets every field through
    ``object.__setattr__``, a third of the parse time); ``fields`` names every field without a
    default."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


@dataclass
class _Pending:
    lineno: int
    name: str
    prefix: str
    time: float | None
    line: str


class Trace:
    """The events of one log, in order of completion; an iterator, read once.

    ``has_pids`` is None until the first line with a leader has been read, then whether any line
    so far had a pid.
    """

    def __init__(self, lines: Iterable[str] | None = None, path: str | None = None, *, fast: bool = True,
                 blocks: Iterable[str] | None = None) -> None:
        """The log as ``lines`` (with or without their newlines) or as ``blocks`` of whole lines
        (each ending with a newline). ``fast=False`` sends every line through the full grammar
        (the tests compare both paths)."""
        self.path = path
        self.has_pids: bool | None = None
        if blocks is None:
            blocks = _line_blocks(lines if lines is not None else ())
        self._events = self._parse(blocks, _BLOCK if fast else _BLOCK_SLOW)

    def __iter__(self) -> Iterator[Event]:
        return self._events

    def __next__(self) -> Event:
        return next(self._events)

    def _error(self, lineno: int, line: str, what: str, column: int | None = None) -> TraceError:
        return TraceError(self.path, lineno, line.rstrip("\r\n"), what, column)

    def _parse(self, blocks: Iterable[str], block_re: re.Pattern[str]) -> Iterator[Event]:
        pending: dict[int, _Pending] = {}
        carry: str | None = None
        simple = simple_value
        is_hex = _HEX.fullmatch
        cache_get = _SIMPLE_CACHE.get
        new = object.__new__
        args_cache: dict[str, tuple[Value, ...]] = {"": ()}  # argument texts repeat: mmap(NULL, 8192, ...
        args_get = args_cache.get
        lineno = carry_lineno = 0
        seen_pid = False
        for block in blocks:
            for m in block_re.finditer(block):
                lineno += 1
                pid_s, pid2, ts, name, argtext, res, fdnote, err, note, dur, line = m.groups()
                if line is None and carry is None:
                    args: tuple[Value, ...] | None = args_get(argtext)
                    if args is None:
                        pieces = argtext.split(", ")
                        values = list(map(cache_get, pieces))
                        if None in values:  # not seen yet: addresses, sizes, new names
                            for i, v in enumerate(values):
                                if v is None:
                                    a = pieces[i]
                                    values[i] = v = int(a, 16) if is_hex(a) else simple(a)
                                    if v is None:
                                        break
                        if None not in values:
                            args = tuple(values)
                            if len(args_cache) > 100_000:
                                args_cache.clear()
                            args_cache[argtext] = args
                    if args is not None:
                        if pid_s is None:
                            pid_s = pid2
                        if not seen_pid:
                            if pid_s is not None:
                                seen_pid = self.has_pids = True
                            elif self.has_pids is None:
                                self.has_pids = False
                        ev = new(Syscall)
                        fields = ev.__dict__
                        fields.update({
                            "pid": int(pid_s) if pid_s else 0, "name": name, "args": args,
                            "result": None if res == "?" else int(res, 16) if "x" in res else int(res),
                            "errno": err, "lineno": lineno, "start_lineno": lineno,
                            "text": block[m.start(4):m.end() - 1]})
                        # the other fields keep their class defaults (None, False) unless present
                        if ts:
                            fields["time"] = fields["end_time"] = _timestamp(ts)
                        if dur:
                            fields["duration"] = float(dur)
                        if note or fdnote:
                            fields["result_note"] = note or fdnote
                        yield ev
                        continue
                if line is None:
                    line = m.group()[:-1]
                first = lineno  # the line the text starts on
                if carry is not None:
                    line, carry, first = carry + line, None, carry_lineno
                line = line.rstrip("\r")
                if not line.strip():
                    continue
                if line[0] == "#":
                    yield _new(Comment, {"lineno": lineno, "text": line[1:].strip()})
                    continue
                if line.startswith("strace: "):
                    continue
                i = line.find("strace: Process ")
                if i > 0 and _MIDLINE_MESSAGE.match(line, i):
                    carry, carry_lineno = line[:i], first
                    continue
                yield from self._slow(line, lineno, pending, first)
                seen_pid = bool(self.has_pids)
        if carry is not None:
            yield from self._slow(carry, lineno, pending, carry_lineno)
        for pid in list(pending):
            yield self._unfinished(pid, pending.pop(pid))

    def _slow(self, line: str, lineno: int, pending: dict[int, _Pending], first: int) -> Iterator[Event]:
        """Any line; ``first`` is the line it started on when strace broke it with a message."""
        fm = _FRAME.match(line)
        assert fm is not None  # every part of the leader is optional
        pid_s = fm.group(1) or fm.group(2)
        pid = int(pid_s) if pid_s else 0
        if pid_s:
            self.has_pids = True
        elif self.has_pids is None:
            self.has_pids = False
        t = _timestamp(fm.group(3))
        at = fm.end()
        body = line[at:]
        if not body:
            raise self._error(lineno, line, "a leader without a call, signal or exit", at + 1)
        c = body[0]
        if c == "<":
            yield self._resumed(line, lineno, at, pid, t, pending)
        elif c == "+":
            yield from self._exit(line, lineno, at, pid, t, pending)
        elif c == "-":
            yield self._signal(line, lineno, at, pid, t)
        else:
            cm = _CALL.match(body)
            if cm is None:
                if body.startswith("> "):
                    raise self._error(lineno, line, "a stack trace line of strace -k (record without -k)",
                                      at + 1)
                raise self._error(lineno, line, "not a system call, signal, exit or strace message", at + 1)
            if body.endswith(_UNFINISHED) or body.endswith(_DETACHED):
                unfinished = body.endswith(_UNFINISHED)
                prefix = body[:-len(_UNFINISHED if unfinished else _DETACHED)]
                if pid in pending:
                    raise self._error(lineno, line, f"a second call started by pid {pid} while "
                                      f"{pending[pid].name} from line {pending[pid].lineno} is unfinished")
                p = _Pending(first, cm.group(1), prefix, t, line)
                if unfinished:
                    pending[pid] = p
                else:
                    yield self._unfinished(pid, p)
            else:
                yield self._complete(line, lineno, at, body, pid, t, t, first, line, 0)

    def _complete(self, line: str, lineno: int, at: int, text: str, pid: int, t: float | None,
                  end_t: float | None, start_lineno: int, start_line: str, split: int) -> Syscall:
        """A whole call text (``split`` > 0: the joined text, whose part from ``split`` on is the
        resumed line's, from offset ``at``)."""
        cm = _CALL.match(text)
        if cm is None:
            raise self._error(lineno, line, "not a system call", at + 1)
        try:
            args, end, cut = parse_args(text, cm.end())
        except ValueSyntaxError as e:
            raise self._value_error(e, lineno, line, at, start_lineno, start_line, split) from None
        rm = _RESULT.match(text, end)
        if rm is None:
            col = at + end - split + 1 if end >= split else None
            raise self._error(lineno, line, "expected ' = RESULT' after the arguments", col)
        res, err, note, dur = rm.groups()
        return _new(Syscall, {
            "pid": pid, "name": cm.group(1), "args": args,
            "result": None if res == "?" else parse_int(res),
            "errno": err, "lineno": lineno, "start_lineno": start_lineno, "text": text, "time": t,
            "duration": float(dur) if dur else None, "result_note": note.strip() if note else None,
            "unfinished": cut, "end_time": end_t})

    def _value_error(self, e: ValueSyntaxError, lineno: int, line: str, at: int, start_lineno: int,
                     start_line: str, split: int) -> TraceError:
        if e.column >= split:
            return self._error(lineno, line, e.message, at + e.column - split + 1)
        return self._error(start_lineno, start_line, e.message + f" (in the call resumed on line {lineno})",
                           None)

    def _resumed(self, line: str, lineno: int, at: int, pid: int, t: float | None,
                 pending: dict[int, _Pending]) -> Syscall:
        m = _RESUMED.match(line, at)
        if m is None:
            raise self._error(lineno, line, "expected '<... NAME resumed>'", at + 1)
        name = m.group(1)
        p = pending.pop(pid, None)
        if p is None:
            # strace writing to stderr prints pids only while there are two tracees or more, so a
            # call may start without a pid and resume with one, or the other way round: take the
            # one unfinished call of that name with a pid missing on either side.
            candidates = [q for q in pending if (q == 0 or pid == 0) and pending[q].name == name]
            if len(candidates) == 1:
                p = pending.pop(candidates[0])
                pid = pid or candidates[0]
        if p is None:
            raise self._error(lineno, line, f"{name} resumed by pid {pid}, which has no unfinished call")
        if p.name != name:
            raise self._error(lineno, line, f"{name} resumed, but the unfinished call of pid {pid} "
                              f"(line {p.lineno}) is {p.name}")
        rest = line[m.end():]
        return self._complete(line, lineno, m.end(), p.prefix + rest, pid, p.time, t, p.lineno, p.line,
                              len(p.prefix))

    def _unfinished(self, pid: int, p: _Pending) -> Syscall:
        """A call that never completed: the arguments strace printed before ``<unfinished ...>``."""
        text = p.prefix.rstrip(" ,")
        cm = _CALL.match(text)
        assert cm is not None
        if text.endswith("("):
            args: tuple[Value, ...] = ()
        else:
            try:
                args, _, _ = parse_args(text + ")", cm.end())
            except ValueSyntaxError as e:
                raise self._error(p.lineno, p.line, e.message) from None
        return _new(Syscall, {
            "pid": pid, "name": p.name, "args": args, "result": None, "errno": None,
            "lineno": p.lineno, "start_lineno": p.lineno, "text": p.prefix, "time": p.time,
            "duration": None, "result_note": None, "unfinished": True, "end_time": None})

    def _exit(self, line: str, lineno: int, at: int, pid: int, t: float | None,
              pending: dict[int, _Pending]) -> Iterator[Event]:
        """The exit; first the process's call that will never complete, if one is in flight."""
        m = _EXIT.match(line, at)
        if m is None:
            raise self._error(lineno, line, "expected '+++ exited with N +++' or '+++ killed by SIG +++'", at + 1)
        status, sig, core, by = m.groups()
        if pid in pending:
            yield self._unfinished(pid, pending.pop(pid))
        if by is not None and int(by) in pending:
            pending[pid] = pending.pop(int(by))  # the execve completes under the leader's pid
        yield _new(Exit, {"pid": pid, "lineno": lineno, "status": int(status) if status else None,
                         "signal": sig, "core_dumped": core is not None,
                         "superseded_by": int(by) if by else None, "text": line[at:], "time": t})

    def _signal(self, line: str, lineno: int, at: int, pid: int, t: float | None) -> Signal:
        m = _SIGNAL.match(line, at)
        if m is None:
            raise self._error(lineno, line, "expected '--- SIGNAME {...} ---'", at + 1)
        stopped, name, info_text = m.groups()
        info = None
        if info_text is not None:
            start = m.start(3)
            try:
                info, end = parse_value(info_text)
            except ValueSyntaxError as e:
                raise self._error(lineno, line, e.message, start + e.column + 1) from None
            if end != len(info_text):
                raise self._error(lineno, line, "unexpected text after the signal's siginfo", start + end + 1)
        return _new(Signal, {"pid": pid, "lineno": lineno, "name": stopped or name, "text": line[at:],
                             "info": info, "stopped": stopped is not None, "time": t})


def parse(text_or_lines: str | bytes | Iterable[str], path: str | None = None) -> Trace:
    """The events of a log given as its text or as lines (with or without their newlines)."""
    if isinstance(text_or_lines, bytes):
        text_or_lines = text_or_lines.decode("utf-8", "surrogateescape")
    if isinstance(text_or_lines, str):
        # split at "\n" only (str.splitlines also splits at \v, \f, \x1c... inside a line)
        text = text_or_lines
        return Trace(path=path, blocks=[text if text.endswith("\n") else text + "\n"] if text else [])
    return Trace(text_or_lines, path)


def _line_blocks(lines: Iterable[str], size: int = 4096) -> Iterator[str]:
    """Blocks of ``size`` lines, each line ending with a newline."""
    batch: list[str] = []
    for line in lines:
        batch.append(line if line.endswith("\n") else line + "\n")
        if len(batch) == size:
            yield "".join(batch)
            batch.clear()
    if batch:
        yield "".join(batch)


def _file_blocks(path: str, size: int = 1 << 20) -> Iterator[str]:
    """The file in blocks of whole lines (about ``size`` characters); a last line without its
    newline gets one."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        rest = ""
        while block := f.read(size):
            block = rest + block
            cut = block.rfind("\n") + 1
            rest = block[cut:]
            if cut:
                yield block[:cut]
        if rest:
            yield rest + "\n"


def parse_file(path: str) -> Trace:
    """The events of the log in file ``path``, read as it goes."""
    return Trace(path=str(path), blocks=_file_blocks(str(path)))
