"""Re-records the traces shipped in ``src/vmkit/trace/data/`` (run as root on a machine like ours).

Each trace is ``vmkit record`` of one real program with a small clean environment; its header names
the command (``# vmkit-command``) and carries the images of the binaries it executed, so
``vmkit replay`` needs neither strace nor the programs.  ``data/README.md`` lists them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vmkit.trace import record

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "src" / "vmkit" / "trace" / "data"
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
WORK = Path(tempfile.gettempdir()) / "vmkit-shipped"


def commands() -> dict[str, tuple[str, list[str]]]:
    """name -> (what it is, command line)."""
    memcalls = WORK / "memcalls"
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(memcalls), str(ROOT / "tests" / "programs" / "memcalls.c")],
                   check=True)
    return {
        "cat": ("coreutils cat reading a file", [shutil.which("cat") or "cat", "/etc/os-release"]),
        "perl": ("Perl 5 building a 20,000-key hash",
                 ["perl", "-e", "my %h = map { $_ => [1 .. 10] } 1 .. 20000; print scalar(keys %h), qq(\\n)"]),
        "sqlite3": ("SQLite in WAL mode with mmap I/O, 20,000 inserts",
                    ["sqlite3", str(WORK / "db.sqlite"),
                     "PRAGMA journal_mode=WAL; PRAGMA mmap_size=8388608; CREATE TABLE t(a, b);"
                     "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)"
                     " INSERT INTO t SELECT x, hex(randomblob(32)) FROM c; SELECT count(*), sum(a) FROM t;"]),
        "node": ("Node.js (V8 JIT, worker threads) allocating 200,000 objects",
                 ["node", "-e", "let a = []; for (let i = 0; i < 200000; i++) a.push({i}); console.log(a.length)"]),
        "memcalls": ("tests/programs/memcalls.c: mremap, madvise, mlock*, mincore, msync, memfd, threads, fork, "
                     "process_vm_readv/writev, process_madvise, with failing calls", [str(memcalls)]),
    }


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    DATA.mkdir(parents=True, exist_ok=True)
    lines = ["# Traces shipped with vmkit", "",
             "Recorded with `vmkit record` (strace 6.1, ASLR off) on Linux 6.18 x86-64 by "
             "`tools/record_shipped.py`; each header's `# vmkit-command` line is the exact command.", "",
             "| trace | program |", "|---|---|"]
    saved = dict(os.environ)
    for name, (what, command) in commands().items():
        os.environ.clear()
        os.environ.update(CLEAN_ENV)
        try:
            status = record.record(command, DATA / f"{name}.trace", stdout=subprocess.DEVNULL)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        print(f"{name}: exit status {status}", file=sys.stderr)
        lines.append(f"| {name}.trace | {what} |")
    (DATA / "README.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
