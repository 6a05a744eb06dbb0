"""``python -m vmkit``: the command line."""

from vmkit.cli import main

raise SystemExit(main())
