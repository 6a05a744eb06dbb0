"""The value grammar of strace's argument lists (strace 6.1 output, ``-v``, ``-y``/``-yy`` forms).

strace prints each argument with its own printer (``src/print_fields.h``, ``printflags``,
``printxval``, ``printstr``, ``printfd`` in strace's sources). This module reads that text back
into Python values without interpreting names: a flag name stays a name, the replay turns names
into numbers with :mod:`vmkit.flags`.

The values:

- decimal, hexadecimal and octal integers (``4096``, ``0x7ffff7fc0000``, ``0644``, ``-1``) -> ``int``;
  ``NULL`` -> ``0``; ``8192*1024`` (strace's rlimit form) -> the product, an ``int``;
- a quoted string -> ``bytes`` with C escapes decoded; a string strace cut (``"abc"...``) ->
  :class:`TruncatedBytes` (a ``bytes`` whose ``truncated`` is True); ``@"name"`` (an abstract
  socket name) -> the kernel's bytes, a NUL then the name;
- a bare name (``AT_FDCWD``, ``MADV_DONTNEED``, ``SIGCHLD``) -> :class:`Symbol`; two or more parts
  joined by ``|`` (``PROT_READ|PROT_WRITE``, ``MAP_PRIVATE|0x200000``, ``S_IFREG|0644``,
  ``MAP_HUGETLB|21<<MAP_HUGE_SHIFT``) -> :class:`Flags` holding every part in order (names as
  ``str``, numbers as ``int``, ``N<<NAME`` as :class:`Shift`); a number strace could not name
  (``0x66 /* MADV_??? */``) -> :class:`Flags` with that number and ``comment="MADV_???"``;
- ``[a, b]`` and strace's space-separated sets (``[INT TERM]``, ``[0 1]``) -> ``list``;
  ``~[...]`` -> :class:`Complement`;
- ``{k=v, ...}`` -> :class:`Struct` (a ``dict``; members without a key are stored under their
  position, an ``int``; a trailing ``...`` sets ``elided``);
- ``...`` (abbreviated lists and structs) -> ``Ellipsis``;
- ``3</usr/lib/libc.so.6>`` (``-y``) -> :class:`Fd`; ``-yy`` device suffixes
  (``1</dev/null<char 1:3>>``) land in ``Fd.dev``;
- ``value /* text */`` -> :class:`Commented` (``0x7ffe... /* 20 vars */``, timestamps in ``-v`` stat
  structs);
- ``name=value`` outside a struct (``clone(child_stack=NULL, flags=...)``) -> :class:`Named`;
  ``[INDEX]=value`` (an array element with its index, ``c_cc=[[VINTR]=0x3, ...]``) -> :class:`Indexed`;
- ``makedev(0x1, 0x3)``, ``htons(80)``, ``WIFEXITED(s)`` -> :class:`Call`;
- ``a && b``, ``x == y``, ``A or B`` (ioctl names), ``&name`` -> :class:`Expr`;
- ``before => after`` (values a call changed) -> :class:`Changed`;
- ``<... resuming interrupted NAME ...>`` (restart_syscall's argument) -> :class:`Interrupted`.

Anything else raises :class:`ValueSyntaxError` with the column of the offending text.
:func:`as_int` turns a scalar value into its number given a name lookup.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Union


class ValueSyntaxError(ValueError):
    """Text that is not strace's value grammar; ``column`` is the 0-based offset in the text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


class TruncatedBytes(bytes):
    """A string strace printed cut at its ``-s`` limit (``"abc"...``): the bytes it printed."""

    truncated = True

    def __repr__(self) -> str:
        return f"TruncatedBytes({bytes(self)!r})"


@dataclass(frozen=True)
class Symbol:
    """A bare name strace printed for a constant (``AT_FDCWD``, ``MADV_DONTNEED``, ``SIGCHLD``)."""

    name: str

    @property
    def parts(self) -> tuple[str]:
        """The parts, as :attr:`Flags.parts` has them: the one name."""
        return (self.name,)


@dataclass(frozen=True)
class Shift:
    """``21<<MAP_HUGE_SHIFT``: a number shifted left by a named amount (a part of :class:`Flags`)."""

    value: int
    name: str


@dataclass(frozen=True)
class Flags:
    """A flag expression: every ``|``-separated part in order, nothing converted.

    ``comment`` holds strace's ``/* MADV_??? */`` note for a number it could not name.
    """

    parts: tuple[Union[str, int, Shift], ...]
    comment: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The named parts (``MAP_PRIVATE`` in ``MAP_PRIVATE|0x200000``)."""
        return tuple(p for p in self.parts if isinstance(p, str))

    @property
    def numbers(self) -> tuple[int, ...]:
        """The numeric parts (``0x200000`` in ``MAP_PRIVATE|0x200000``)."""
        return tuple(p for p in self.parts if isinstance(p, int))

    @property
    def shifts(self) -> tuple[Shift, ...]:
        """The ``N<<NAME`` parts."""
        return tuple(p for p in self.parts if isinstance(p, Shift))


@dataclass(frozen=True)
class Complement:
    """``~[RTMIN RT_1]``: every member of a set but these."""

    items: tuple[Any, ...]


class Struct(dict[Any, Any]):
    """``{k=v, ...}``: the members by name (members without a name under their position)."""

    elided: bool = False

    def __eq__(self, other: object) -> bool:
        return dict.__eq__(self, other) is True and getattr(other, "elided", False) == self.elided

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        return f"Struct({dict.__repr__(self)}{', elided' if self.elided else ''})"


@dataclass(frozen=True)
class Fd:
    """A descriptor with its ``-y`` annotation: ``3</usr/lib/libc.so.6>``, ``AT_FDCWD</tmp>``,
    ``5</dev/shm/sem.x>(deleted)`` (strace's ``printfd_pid``).

    ``fd`` is the number, or the :class:`Symbol` ``AT_FDCWD``; ``dev`` is ``-yy``'s
    ``char 1:3``/``block 8:1`` suffix.
    """

    fd: Union[int, Symbol]
    path: str
    dev: str | None = None
    deleted: bool = False  # "(deleted)" after the path: the file was unlinked


@dataclass(frozen=True)
class Commented:
    """A value followed by strace's ``/* text */`` (``0x7ffe... /* 20 vars */``)."""

    value: Any
    comment: str


@dataclass(frozen=True)
class Named:
    """``name=value`` in an argument list (``clone(child_stack=NULL, flags=...)``) or a list."""

    name: str
    value: Any


@dataclass(frozen=True)
class Indexed:
    """``[VINTR]=0x3``: an array element with its index (``c_cc=[[VINTR]=0x3, ...]``)."""

    index: Any
    value: Any


@dataclass(frozen=True)
class Call:
    """A function-call form strace prints: ``makedev(0x1, 0x3)``, ``htons(80)``, ``WIFEXITED(s)``."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Expr:
    """An operator strace prints between values: ``&&``, ``||``, ``==``, ``!=``, ``or``; ``&`` (unary,
    ``left`` is None). Chains are read left to right without precedence:
    ``WIFEXITED(s) && WEXITSTATUS(s) == 0`` is ``Expr("==", Expr("&&", ...), 0)``."""

    op: str
    left: Any
    right: Any


@dataclass(frozen=True)
class Changed:
    """``before => after``: what the kernel wrote back over an in/out argument."""

    before: Any
    after: Any


@dataclass(frozen=True)
class Interrupted:
    """``<... resuming interrupted NAME ...>``: restart_syscall resuming ``name``."""

    name: str


Value = Any
"""One parsed argument: any of the forms listed in the module docstring."""


def as_int(value: Value, lookup: Callable[[str], int]) -> int:
    """The number a scalar argument stands for, names looked up by the caller (the replay knows
    the constants, e.g. ``lambda name: int(getattr(vmkit, name))``): an ``int`` as it is, a
    :class:`Symbol` through ``lookup``, :class:`Flags` as the OR of its parts, ``N<<NAME`` as ``N``
    shifted by ``lookup(NAME)``, an :class:`Fd` as its descriptor, a :class:`Commented` value as
    the value. Anything else (strings, lists, structs...) is a ``ValueError`` naming it."""
    if isinstance(value, int):
        return value
    if isinstance(value, Symbol):
        return lookup(value.name)
    if isinstance(value, Flags):
        n = 0
        for part in value.parts:
            n |= part if isinstance(part, int) else as_int(part, lookup) if isinstance(part, Shift) \
                else lookup(part)
        return n
    if isinstance(value, Shift):
        return value.value << lookup(value.name)
    if isinstance(value, Fd):
        return as_int(value.fd, lookup)
    if isinstance(value, Commented):
        return as_int(value.value, lookup)
    raise ValueError(f"not a number, a name or a flag expression: {value!r}")


_INT = re.compile(r"-?(?:0x[0-9a-fA-F]+|[0-9]+)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\?\?\?)?|\?\?\?")
_STRING = re.compile(r'"((?>[^"\\]*(?:\\.[^"\\]*)*))"')  # unrolled, atomic: no backtracking
_COMMENT = re.compile(r"/\* ?(.*?) ?\*/")
_UNKNOWN_NAME = re.compile(r"[A-Z0-9_]+_\?\?\?")
_INTERRUPTED = re.compile(r"<\.\.\. resuming interrupted ([\w?]+) \.\.\.>")
_BINOPS = ("&&", "||", "==", "!=")
_CUT = "<unfinished ...>)"


def parse_int(text: str) -> int:
    """An integer as strace prints it: decimal, ``0x`` hex, or C octal with a leading 0."""
    if text[0] == "-":
        return -parse_int(text[1:])
    if len(text) > 1 and text[0] == "0" and text[1] != "x":
        return int(text, 8)
    return int(text, 0) if text[:2] == "0x" else int(text)


def string_end(s: str, start: int) -> int:
    """The index of the quote that closes the string opening at ``s[start]``, or -1. (str.find,
    not a regex: a regex walks a 4096-byte buffer of escapes at ~50 ns a character.)"""
    i = start
    while True:
        i = s.find('"', i + 1)
        if i < 0:
            return -1
        j = i - 1
        while s[j] == "\\":
            j -= 1
        if (i - j) % 2:  # an even number of backslashes before it: not escaped
            return i


def decode_string(body: str) -> bytes:
    """The bytes of a quoted string's body: strace's escapes (``printstr``'s ``\\t \\n \\v \\f \\r \\\\
    \\"``, octal ``\\NNN``, ``-x``'s ``\\xHH``) decoded; other characters are taken as UTF-8."""
    raw = body.encode("utf-8", "surrogateescape")
    if "\\" not in body:
        return raw
    return codecs.escape_decode(raw)[0]


def _comment(value: Any, text: str) -> Any:
    """``value /* text */``: a number strace could not name (``0x66 /* MADV_??? */``) is
    :class:`Flags` with that comment, anything else :class:`Commented`."""
    if _UNKNOWN_NAME.fullmatch(text) and isinstance(value, (int, Flags)):
        return Flags(value.parts if isinstance(value, Flags) else (value,), text)
    return Commented(value, text)


class _Parser:
    """Recursive descent over one text; ``pos`` moves forward, errors carry the column."""

    __slots__ = ("s", "pos", "n", "cut")

    def __init__(self, s: str, pos: int = 0) -> None:
        self.s = s
        self.pos = pos
        self.n = len(s)
        self.cut = False  # the argument list ended with strace's "<unfinished ...>)"

    def fail(self, what: str, pos: int | None = None) -> ValueSyntaxError:
        p = self.pos if pos is None else pos
        if p >= self.n:
            return ValueSyntaxError(f"{what}: the text ends (line cut short?)", p)
        return ValueSyntaxError(f"{what} at {self.s[p:p + 20]!r}", p)

    def skip(self) -> None:
        s, p = self.s, self.pos
        while p < self.n and s[p] == " ":
            p += 1
        self.pos = p

    def peek(self, text: str) -> bool:
        return self.s.startswith(text, self.pos)

    def items(self, close: str, what: str, spaces: bool = True, keyed: bool = False) -> list[Any]:
        """Members up to ``close``, separated by ``, `` or (``spaces``) by spaces: strace's sets
        ``[INT TERM]``, termios ``{B38400 opost isig ...}``. With ``keyed`` (a struct's members),
        a simple ``name=value`` comes back as a ``(name, value)`` tuple, cheaper than a Named."""
        out: list[Any] = []
        append = out.append
        s, n = self.s, self.n
        pos = self.pos
        while pos < n and s[pos] == " ":
            pos += 1
        if s.startswith(close, pos):
            self.pos = pos + 1
            return out
        simple_item = _SIMPLE_ITEM.match
        args = close == ")"
        while True:
            if args and s.startswith(_CUT, pos):
                self.pos = pos + len(_CUT)
                self.cut = True
                return out
            if s[pos] == '"':  # a string, perhaps long: found with str.find
                end = string_end(s, pos)
                if end > 0 and (s.startswith(", ", end + 1) or s[end + 1:end + 2] == close):
                    append(decode_string(s[pos + 1:end]))
                    pos = end + 1
                    if s.startswith(", ", pos):
                        pos += 2
                        while pos < n and s[pos] == " ":
                            pos += 1
                        continue
                    self.pos = pos + 1
                    return out
                m = None
            else:
                # most members are [name=]number, name, a|b|c, fd<path> or a whole string, with
                # perhaps a /* comment */ and their ", ": one regex
                m = simple_item(s, pos)
            if m is not None:
                key, text, comment, comma = m.groups()
                v = decode_string(text[1:-1]) if text[0] == '"' else simple_value(text)
                if v is None:  # cannot happen: _SIMPLE_ITEM's forms are a subset of simple_value's
                    self.pos = pos
                    raise self.fail("internal error: a simple item simple_value does not read")
                if comment is not None:
                    v = _comment(v, comment)
                append(v if not key else (key, v) if keyed else Named(key, v))
                pos = m.end()
                if comma:
                    while pos < n and s[pos] == " ":
                        pos += 1
                    continue
            else:
                self.pos = pos
                append(self.value())
                pos = self.pos
            start = pos
            while pos < n and s[pos] == " ":
                pos += 1
            self.pos = pos
            if pos >= n:
                raise self.fail(f"unclosed {what}")
            c = s[pos]
            if c == close:
                self.pos = pos + 1
                return out
            if args and s.startswith(_CUT, pos):
                continue  # "exit(0 <unfinished ...>) = ?"
            if c == ",":
                pos += 1
                while pos < n and s[pos] == " ":
                    pos += 1
            elif pos == start or not spaces:
                raise self.fail(f"expected ',' or '{close}' in {what}")

    def args(self) -> tuple[Any, ...]:
        """An argument list after its ``(``, through the matching ``)``."""
        return tuple(self.items(")", "argument list", spaces=False))

    def value(self) -> Any:
        v = self.operand()
        while True:
            save = self.pos
            self.skip()
            if self.pos >= self.n:
                self.pos = save
                return v
            s, p = self.s, self.pos
            c = s[p]
            if c == "|" and not s.startswith("||", p):
                v = self.flags(v)
            elif c == "/" and s.startswith("/*", p):
                m = _COMMENT.match(s, p)
                if m is None:
                    raise self.fail("unclosed comment")
                self.pos = m.end()
                v = _comment(v, m.group(1))
            elif c == "=" and s.startswith("=>", p):
                self.pos = p + 2
                self.skip()
                v = Changed(v, self.value())
            elif c == "*" and isinstance(v, int):
                self.pos = p + 1
                right = self.operand()
                if not isinstance(right, int):
                    raise self.fail("expected a number after '*'", p + 1)
                v = v * right
            elif s.startswith(_BINOPS, p):
                op = s[p:p + 2]
                self.pos = p + 2
                self.skip()
                v = Expr(op, v, self.operand())
            elif s.startswith("or ", p) and p > save:
                self.pos = p + 3
                self.skip()
                v = Expr("or", v, self.operand())
            else:
                self.pos = save
                return v

    def flags(self, first: Any) -> Flags:
        parts: list[str | int | Shift] = []
        self.add_part(parts, first, self.pos)
        while self.pos < self.n and self.s[self.pos] == "|" and not self.s.startswith("||", self.pos):
            self.pos += 1
            at = self.pos
            self.add_part(parts, self.operand(), at)
        return Flags(tuple(parts))

    def add_part(self, parts: list[str | int | Shift], v: Any, at: int) -> None:
        if isinstance(v, Symbol):
            parts.append(v.name)
        elif isinstance(v, (int, Shift)):
            parts.append(v)
        elif isinstance(v, Flags) and v.comment is None:
            parts.extend(v.parts)
        else:
            raise self.fail("a flag part must be a name, a number or N<<NAME", at)

    def operand(self) -> Any:
        s, p = self.s, self.pos
        if p >= self.n:
            raise self.fail("expected a value")
        c = s[p]
        if c == '"':
            return self.string()
        if c == "-" or "0" <= c <= "9":
            m = _INT.match(s, p)
            if m is None:
                raise self.fail("expected a number")
            self.pos = m.end()
            n = parse_int(m.group())
            if self.pos < self.n:
                nxt = s[self.pos]
                if nxt == "<":
                    if s.startswith("<<", self.pos):
                        self.pos += 2
                        m2 = _NAME.match(s, self.pos)
                        if m2 is None:
                            raise self.fail("expected a name after '<<'")
                        self.pos = m2.end()
                        return Shift(n, m2.group())
                    return self.fd(n)
            return n
        if c == "[":
            self.pos = p + 1
            items = self.items("]", "list")
            q = self.pos
            if len(items) == 1 and s.startswith("=", q) and not s.startswith(("==", "=>"), q):
                self.pos = q + 1
                return Indexed(items[0], self.value())
            return items
        if c == "{":
            self.pos = p + 1
            return self.struct()
        if c == "." and s.startswith("...", p):
            self.pos = p + 3
            return ...
        if c == "~" and s.startswith("~[", p):
            self.pos = p + 2
            return Complement(tuple(self.items("]", "set")))
        if c == "@" and s.startswith('@"', p):
            self.pos = p + 1
            return b"\0" + self.string()
        if c == "&" and not s.startswith("&&", p):
            self.pos = p + 1
            return Expr("&", None, self.operand())
        if c == "<":
            m = _INTERRUPTED.match(s, p)
            if m is not None:
                self.pos = m.end()
                return Interrupted(m.group(1))
        m = _NAME.match(s, p)
        if m is None:
            raise self.fail("unexpected text")
        name = m.group()
        p = self.pos = m.end()
        if p < self.n:
            nxt = s[p]
            if nxt == "(":
                self.pos = p + 1
                return Call(name, self.args())
            if nxt == "=" and not s.startswith("==", p) and not s.startswith("=>", p):
                self.pos = p + 1
                return Named(name, self.value())
            if nxt == "<" and not s.startswith("<<", p):
                return self.fd(Symbol(name))
        if name == "NULL":
            return 0
        return Symbol(name)

    def string(self) -> bytes:
        end = string_end(self.s, self.pos)
        if end < 0:
            raise self.fail("unterminated string")
        data = decode_string(self.s[self.pos + 1:end])
        self.pos = end + 1
        if self.s.startswith("...", self.pos):
            self.pos += 3
            return TruncatedBytes(data)
        return data

    def fd(self, fd: int | Symbol) -> Fd:
        """``<path>`` after a descriptor. strace escapes ``<`` and ``>`` inside a path; ``-yy``
        socket details (``<UNIX-STREAM:[220268->220269]>``, ``<TCPv6:[[::1]:57993]>``,
        ``<UNIX-STREAM:[220267,@"name"]>``) are bracketed and may hold ``->`` and quoted names;
        ``-yy`` may append one nested ``<char M:N>`` device suffix."""
        s, n = self.s, self.n
        start = self.pos + 1
        i = start
        depth = 0
        while i < n:
            c = s[i]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
            elif c == '"':
                m = _STRING.match(s, i)
                if m is None:
                    raise self.fail("unterminated string in a descriptor's annotation", i)
                i = m.end()
                continue
            elif depth <= 0 and (c == ">" or c == "<"):
                break
            i += 1
        if i >= n:
            raise self.fail("unclosed '<' after a descriptor")
        path = s[start:i]
        dev = None
        if s[i] == "<":
            j = s.find(">", i)
            if j < 0 or j + 1 >= n or s[j + 1] != ">":
                raise self.fail("unclosed '<' after a descriptor")
            dev = s[i + 1:j]
            i = j + 1
        self.pos = i + 1
        deleted = s.startswith("(deleted)", self.pos)
        if deleted:
            self.pos += len("(deleted)")
        if "\\" in path and '"' not in path:
            path = decode_string(path).decode("utf-8", "surrogateescape")
        return Fd(fd, path, dev, deleted)

    def struct(self) -> Struct:
        out = Struct()
        for i, item in enumerate(self.items("}", "struct", keyed=True)):
            if type(item) is tuple:  # no value is a bare tuple: items() made it for a simple member
                out[item[0]] = item[1]
            elif isinstance(item, Named):
                out[item.name] = item.value
            elif item is ...:
                out.elided = True
            else:
                out[i] = item
        return out


def parse_args(text: str, pos: int) -> tuple[tuple[Any, ...], int, bool]:
    """The arguments of a call whose ``(`` ends just before ``pos``: the values, the offset just
    past the matching ``)``, and whether the list ended with ``<unfinished ...>)`` (strace's
    ``print_event_exit``: the process died inside the call, the arguments it prints at exit are
    missing). Raises :class:`ValueSyntaxError`."""
    p = _Parser(text, pos)
    args = p.args()
    return args, p.pos, p.cut


def parse_value(text: str, pos: int = 0) -> tuple[Any, int]:
    """One value starting at ``pos``: the value and the offset just past it."""
    p = _Parser(text, pos)
    v = p.value()
    return v, p.pos


_SIMPLE_CACHE: dict[str, Any] = {}
_SIMPLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIMPLE_INT = re.compile(r"-?(?:0x[0-9a-fA-F]+|[0-9]+)")
_SIMPLE_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|-?(?:0x[0-9a-fA-F]+|[0-9]+)(?:<<[A-Za-z_][A-Za-z0-9_]*)?")
_SIMPLE_FD = re.compile(r"(-?[0-9]+|AT_FDCWD)<([^<>]*)>(\(deleted\))?")
_SIMPLE_ITEM = re.compile(
    r"(?:([A-Za-z_][A-Za-z0-9_]*)=)?"
    r"(-?(?:0x[0-9a-fA-F]+|[0-9]+)(?![<*])"
    r"|(?:-?[0-9]+|AT_FDCWD)<[^<>\[\]\"]*>(?:\(deleted\))?"
    r"|[A-Za-z_][A-Za-z0-9_]*(?:\|(?:[A-Za-z_][A-Za-z0-9_]*|0x[0-9a-fA-F]+|[0-9]+))*(?![(<=])"
    r'|"(?>[^"\\]*(?:\\.[^"\\]*)*)"(?!\.\.\.))'  # atomic: a "..."... fails without backtracking'
    r"(?: /\* ?(.*?) ?\*/)?"  # 0x7ffe... /* 20 vars */, st_atime=1795678277 /* 2026-... */
    r"(, |(?=[\]})]))")


def simple_value(text: str) -> Any:
    """The fast path for the common argument shapes (a number, ``NULL``, a name, a ``|`` chain, a
    ``-y`` descriptor without ``-yy``'s device suffix);
    None when ``text`` needs the full grammar. Results are cached: they are immutable."""
    v = _SIMPLE_CACHE.get(text)
    if v is not None:
        return v
    if _SIMPLE_INT.fullmatch(text):
        v = parse_int(text)
    elif _SIMPLE_NAME.fullmatch(text):
        v = 0 if text == "NULL" else Symbol(text)
    elif "<" in text and "<<" not in text:
        m = _SIMPLE_FD.fullmatch(text)
        if m is None:
            return None
        fd, path, deleted = m.groups()
        if "\\" in path and '"' not in path:  # as in _Parser.fd
            path = decode_string(path).decode("utf-8", "surrogateescape")
        v = Fd(Symbol(fd) if fd == "AT_FDCWD" else int(fd), path, None, deleted is not None)
    elif "|" in text or "<<" in text:
        parts: list[str | int | Shift] = []
        for part in text.split("|"):
            if not _SIMPLE_PART.fullmatch(part):
                return None
            if part[0].isalpha() or part[0] == "_":
                parts.append(part)
            elif "<<" in part:
                num, name = part.split("<<")
                parts.append(Shift(parse_int(num), name))
            else:
                parts.append(parse_int(part))
        v = parts[0] if len(parts) == 1 else Flags(tuple(parts))
    else:
        return None
    if len(_SIMPLE_CACHE) > 50_000:  # a module-wide cache: keep it small
        _SIMPLE_CACHE.clear()
    _SIMPLE_CACHE[text] = v
    return v
