"""Reading ``/proc/<pid>/maps`` text (as ``Process.maps()`` returns it) into fields."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MapsLine:
    """One line of maps: ``start-end perms offset dev inode name``."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    name: str


def parse_maps(text: str) -> list[MapsLine]:
    """Parses maps text, one :class:`MapsLine` per line."""
    lines = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        lines.append(MapsLine(start, end, fields[1], int(fields[2], 16), fields[3], int(fields[4]),
                              fields[5] if len(fields) > 5 else ""))
    return lines
