"""``python -m vmkit``: the command line."""

from vmkit.cli import entry

raise SystemExit(entry())
