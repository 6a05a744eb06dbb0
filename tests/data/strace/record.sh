#!/bin/sh
# Records the full logs these fixtures were cut from (strace 6.1, Linux 6.18 x86-64, ASLR off,
# an empty environment so no variable of the recording machine lands in a fixture).
# Usage: record.sh OUTDIR. Each fixture is a contiguous excerpt of one log, cut where no call was
# in flight (see README.md for the line ranges).
set -eu
out=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$here"
cc -O1 -pthread -o "$out/threads" "$here/src/threads.c"
cc -O1 -pthread -o "$out/signals" "$here/src/signals.c"
cc -O1 -pthread -o "$out/exit_in_call" "$here/src/exit_in_call.c"
cc -O1 -o "$out/block_read" "$here/src/block_read.c"
run() { name=$1; shift; env -i PATH=/usr/bin:/bin setarch -R strace "$@"; }
run ls_tt_T     -f -tt -T -o "$out/ls_tt_T.log" ls / >/dev/null
run ls_ttt      -f -ttt -o "$out/ls_ttt.log" ls / >/dev/null
run ls_t        -f -t -o "$out/ls_t.log" ls / >/dev/null
run ls_r        -f -r -o "$out/ls_r.log" ls / >/dev/null
run ls_nopid    -o "$out/ls_nopid.log" ls / >/dev/null
run ls_y        -f -y -o "$out/ls_y.log" ls / >/dev/null
run ls_v        -f -v -s 4096 -o "$out/ls_v.log" ls -l /etc/hostname >/dev/null
run threads     -f -tt -T -o "$out/threads.log" "$out/threads" >/dev/null || true
run signals     -f -tt -o "$out/signals.log" "$out/signals"
run python_yy   -f -yy -o "$out/python_yy.log" python3 -c 'import socket, os; s = socket.socket(); r, w = os.pipe(); os.eventfd(0)'
run python_full -f -e trace=%memory,%process,%file,%desc -y -v -s 4096 -o "$out/python_full.log" \
    python3 -c 'import threading; t = threading.Thread(target=print); t.start(); t.join()' >/dev/null
# strace writing to stderr ([pid N] prefixes, "strace: Process N attached" inside lines)
env -i PATH=/usr/bin:/bin setarch -R strace -f -tt sh -c 'ls / >/dev/null & wait' 2>"$out/stderr.log"
# a terminal for stty (script gives it a pty): -v termios with [VINTR]=0x3 array elements
script -qc "env -i PATH=/usr/bin:/bin strace -v -o '$out/stty_v.log' stty -a" /dev/null >/dev/null
# a thread blocked in read (on a pipe that stays empty for 1 s) when its process exits
sleep 1 | env -i PATH=/usr/bin:/bin setarch -R strace -f -o "$out/exit_in_call.log" "$out/exit_in_call"
# a process killed (by its pid, from outside) while blocked in read
sleep 2 | env -i PATH=/usr/bin:/bin setarch -R strace -o "$out/killed_in_call.log" "$out/block_read" &
tracer=$!
sleep 0.5
kill -KILL "$(pgrep -P "$tracer")"
wait "$tracer" || true
# every leader field: --decode-pids=comm, -tt with -r, -n, -i
run leader -f -n -i -tt -r --decode-pids=comm -o "$out/leader.log" true
# a descriptor of an unlinked file: 3</path>(deleted)
run deleted -f -y -e trace=openat,unlink,newfstatat,ftruncate,mmap,close -o "$out/deleted.log" \
    python3 -c 'import os, mmap; fd = os.open("/tmp/vmkit-deleted", os.O_CREAT | os.O_RDWR); os.unlink("/tmp/vmkit-deleted"); os.ftruncate(fd, 4096); mmap.mmap(fd, 4096); os.close(fd)'
