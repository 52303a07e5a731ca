#!/usr/bin/env bash
# Runs python_preempt.py natively and under the shim: while one thread spins in pure Python,
# a sleeper, a TCP ping-pong and a lock hand-off must each keep going (never 500 ms late), and
# _thread.interrupt_main() must reach main spinning in `while True: n += 1`. A spinning fiber
# makes no call that parks, so this passes under the shim only once fibers are pre-empted.
# Usage: python_preempt.sh LIBGREEN.so
set -euo pipefail
lib=$1
python=/usr/bin/python3
script=$(dirname "$0")/python_preempt.py
work=$(mktemp -d)
# shellcheck source=integration/bounded_run.sh
source "$(dirname "$0")/bounded_run.sh"
trap 'kill_bounded_run; rm -rf "$work"' EXIT

expected="sleeper woke 10 times, never more than 500 ms late
recv got 409600 bytes in 100 chunks, intact, round trips never more than 500 ms late
lock passed 100 times, never more than 500 ms late
interrupt_main reached the busy loop"

# Natively the script runs up to 8 OS threads at once (main, the spinner, the sleeper, the
# feeder and its receiver, the lock hand-off and its two players; the sampling sees 5 to 8,
# they live half a second). Under the shim they are fibers on the carriers; the bound leaves
# room for libgreen's own threads (the monitor, and one more such as libuv's pool), not for
# the script's.
max_green_threads=$(($(carriers) + 2))

status=0
bounded_run native 60 env "$python" "$script"
echo "native: $run_ms ms, at most $run_threads OS threads"
check_run native "$expected" || status=1
native_threads=$run_threads

green_run "the script" "$max_green_threads" "$native_threads" "$expected" \
  "LD_PRELOAD=$lib" "$python" "$script" || status=1
((status == 0)) && echo "python preempt: the same natively and under the shim"
exit $status
