# shellcheck shell=bash disable=SC2034  # run_* are read by the script that sources this
# Sourced by the integration scripts that run one program natively and then under the shim:
# runs a command with a deadline, times it and samples its OS thread count. Never leaves a
# process behind: the sourcing script's EXIT trap calls kill_bounded_run.

# bounded_run TAG SECONDS COMMAND...
#   Runs COMMAND (usually `env ... PROGRAM ARGS`; env execs, so the program keeps its pid) under
#   `timeout`. At the deadline the program gets SIGUSR2 first, which under the shim dumps
#   libgreen's counters (GREEN_STATS_SIGNAL=USR2) and in Python dumps every thread's stack,
#   then SIGKILL 5 s later. Needs $work (a scratch directory). Sets:
#     run_status   the exit status (124 or 137: the deadline passed)
#     run_ms       wall time in milliseconds
#     run_threads  the most OS threads seen in /proc/PID/status, sampled every 50 ms
#   stdout goes to $work/TAG.out, stderr to $work/TAG.err.
bounded_run() {
  local tag=$1 seconds=$2 begin=${EPOCHREALTIME//[.,]/} n
  shift 2
  : "${work:?bounded_run needs \$work, a scratch directory}"
  timeout -s USR2 -k 5 "$seconds" "$@" >"$work/$tag.out" 2>"$work/$tag.err" &
  run_timeout_pid=$!
  run_program_pid=""
  run_threads=0
  while kill -0 "$run_timeout_pid" 2>/dev/null; do
    if [[ -z $run_program_pid ]]; then  # timeout's child, once it has forked it
      local children=/proc/$run_timeout_pid/task/$run_timeout_pid/children
      run_program_pid=$(awk '{print $1}' "$children" 2>/dev/null || true)
    fi
    if [[ -n $run_program_pid ]]; then
      n=$(awk '/^Threads:/ {print $2}' "/proc/$run_program_pid/status" 2>/dev/null || true)
      ((${n:-0} > run_threads)) && run_threads=$n
    fi
    sleep 0.05
  done
  run_status=0
  wait "$run_timeout_pid" || run_status=$?
  run_timeout_pid="" run_program_pid=""  # both reaped: their pids may be reused
  run_ms=$(((${EPOCHREALTIME//[.,]/} - begin) / 1000))
}

# Kills the run still going, if any (the program first: timeout would only forward a signal).
# Safe in an EXIT trap under `set -e`: it never fails.
kill_bounded_run() {
  if [[ -n ${run_program_pid:-} ]]; then kill -KILL "$run_program_pid" 2>/dev/null || true; fi
  if [[ -n ${run_timeout_pid:-} ]]; then kill -KILL "$run_timeout_pid" 2>/dev/null || true; fi
}

# check_run TAG EXPECTED: the run must have ended by itself with status 0 and printed exactly
# EXPECTED. Otherwise says how (the deadline, the status, a diff of the output, the tail of
# stderr) and returns 1.
check_run() {
  local tag=$1 expected=$2
  if ((run_status == 124 || run_status == 137)); then
    echo "$tag: still running at the deadline (status $run_status), killed"
  elif ((run_status != 0)); then
    echo "$tag: exited with status $run_status"
  fi
  if [[ "$(cat "$work/$tag.out")" != "$expected" ]]; then
    echo "$tag: printed something else (- expected, + printed):"
    diff <(echo "$expected") "$work/$tag.out" | sed -n 's/^</  -/p; s/^>/  +/p'
  elif ((run_status == 0)); then
    return 0
  fi
  echo "$tag: the end of its stderr:"
  grep -v '^green\.stats\.' "$work/$tag.err" | tail -25 | sed 's/^/  /'
  return 1
}

# The carrier threads a program under the shim runs: GREEN_CARRIERS, else one per CPU this
# process may run on (nproc honours the affinity mask, as the runtime does).
carriers() {
  local n=${GREEN_CARRIERS:-}
  if [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 64)); then echo "$n"; return; fi
  n=$(nproc)
  echo $((n > 64 ? 64 : n))
}

# green_run WHAT MAX_THREADS NATIVE_THREADS EXPECTED COMMAND...: COMMAND under the shim with
# the watchdog (one more OS thread: it names the fiber that holds the carrier when this
# fails) and GREEN_STATS (how many fibers ran and where they parked), checked as check_run
# does; it must also have stayed at MAX_THREADS OS threads at most, or WHAT's threads did not
# become fibers. Returns 1 if anything failed.
green_run() {
  local what=$1 max=$2 native=$3 expected=$4 ok=0
  shift 4
  bounded_run green 60 env GREEN_MONITOR_MS=1000 GREEN_STATS=1 GREEN_STATS_SIGNAL=USR2 "$@"
  echo "green: $run_ms ms, at most $run_threads OS threads"
  grep -h '^green: stats at' "$work/green.err" | tail -1 || true
  check_run green "$expected" || ok=1
  if ((run_threads > max)); then
    echo "green: $run_threads OS threads (natively $native), more than $max: $what's threads" \
      "did not become fibers"
    ok=1
  fi
  return $ok
}
