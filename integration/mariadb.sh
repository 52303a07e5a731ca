#!/usr/bin/env bash
# MariaDB (Debian's mariadb-server) natively and under the shim: 50 concurrent clients
# insert, update in transactions and run aggregate selects. Under the shim the final table
# must be exactly what the same load leaves natively, the server must log no error and never
# crash, keep its threads as fibers (a few OS threads at most, ~60 natively) and shut down
# cleanly. Its current connection (current_thd) is a C++ thread_local: with fibers sharing
# their carrier's thread-locals it crashed as soon as two clients ran at once.
# With its default settings: InnoDB's native aio is io_uring (liburing), whose completion
# thread waits in io_uring_wait_cqe (hooks/uring.cpp); both runs must say which aio they used,
# and the same. The kernel's io_uring workers (iou-wrk-*) are threads of the process too; they
# are counted apart. The one setting changed is the lock wait timeout (50 s by default): the
# bulk updates wait for each other's row locks, and on a loaded machine even the native run
# went past 50 s.
# Then the same with io_uring refused (NO_IO_URING, a seccomp launcher), where InnoDB falls back
# to libaio (io_getevents through syscall(2)), with fewer clients.
# Usage: mariadb.sh LIBGREEN.so [NO_IO_URING]   Exit 77 (skipped) when mariadbd is not installed.
set -euo pipefail
lib=$1
no_io_uring=${2:-}
mariadbd=$(command -v mariadbd || true)
[[ -z "$mariadbd" && -x /usr/sbin/mariadbd ]] && mariadbd=/usr/sbin/mariadbd
if [[ -z "$mariadbd" ]] || ! command -v mariadb-install-db >/dev/null; then
  echo "mariadb-server is not installed (scripts/setup.sh installs it): skipped"
  exit 77
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill -KILL "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

clients=50
rows_per_client=200
mariadb-install-db --no-defaults --datadir="$work/pristine" --user=root \
  --auth-root-authentication-method=normal >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; exit 1; }

sql() { timeout 120 mariadb --no-defaults -uroot -S "$work/sock" -N -B test "$@"; }

# The work of client $1: its rows, then an update transaction on a quarter of them, then a
# bulk update, then the aggregates (their answers depend on timing; only the end state is
# compared).
client() {
  local i=$1 j
  {
    for ((j = 0; j < rows_per_client; j++)); do
      echo "INSERT INTO t (k, v) VALUES ($((j % 10)), 'c$i-$j');"
    done
  } | sql || return 1
  {
    echo "START TRANSACTION;"
    for ((j = 0; j < rows_per_client; j += 4)); do
      echo "UPDATE t SET k = k + $((i % 3 + 1)), v = CONCAT(v, 'u') WHERE v = 'c$i-$j';"
    done
    echo "COMMIT;"
    echo "UPDATE t SET k = k * 2 WHERE v LIKE 'c$i-1%';"
  } | sql || return 1
  echo "SELECT COUNT(*), SUM(k) FROM t; SELECT k, COUNT(*) FROM t GROUP BY k;" | sql >/dev/null
}

# The program's own OS threads: every task but the kernel's io_uring workers (iou-wrk-N, and
# iou-sqp-N for SQPOLL rings), which the kernel starts for requests that must block.
threads_of() {
  local n=0 comm
  for comm in /proc/"$1"/task/*/comm; do
    read -r comm <"$comm" 2>/dev/null || continue
    [[ $comm == iou-* ]] || n=$((n + 1))
  done
  echo "$n"
}
kernel_workers_of() {
  local n=0 comm
  for comm in /proc/"$1"/task/*/comm; do
    read -r comm <"$comm" 2>/dev/null || continue
    [[ $comm == iou-* ]] && n=$((n + 1))
  done
  echo "$n"
}

# Runs the whole load against a fresh server; $1 is the tag, $2 "green" to preload the shim;
# further words start the server (the io_uring refusal).
run_load() {
  local tag=$1 mode=$2
  shift 2
  local launcher=("$@")
  rm -rf "$work/data" "$work/sock"
  cp -a "$work/pristine" "$work/data"
  local env=()
  [[ $mode == green ]] && env=(env "LD_PRELOAD=$lib")
  "${env[@]}" timeout 600 "${launcher[@]}" "$mariadbd" --no-defaults --datadir="$work/data" --socket="$work/sock" \
    --port=0 --skip-networking --user=root --innodb-lock-wait-timeout=300 \
    --log-error="$work/err-$tag.log" >"$work/out-$tag.log" 2>&1 &
  server_pid=$!
  # The server is timeout's child (env execs timeout): its threads are the ones counted.
  local mariadbd_pid="" tries=0
  while [[ -z "$mariadbd_pid" ]] && ((tries++ < 200)); do
    mariadbd_pid=$(cat "/proc/$server_pid/task/$server_pid/children" 2>/dev/null || true)
    mariadbd_pid=${mariadbd_pid%% *}
    [[ -n "$mariadbd_pid" ]] || sleep 0.05
  done
  [[ -n "$mariadbd_pid" ]] || { echo "$tag: no mariadbd under $server_pid"; return 1; }
  local give_up=$((SECONDS + 120))
  until timeout 5 mariadb-admin --no-defaults -uroot -S "$work/sock" ping >/dev/null 2>&1; do
    sleep 0.2
    if ((SECONDS > give_up)) || ! kill -0 "$server_pid" 2>/dev/null; then
      echo "$tag: the server did not start"; tail -20 "$work/err-$tag.log"; return 1
    fi
  done
  echo "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, k INT, v VARCHAR(64)) ENGINE=InnoDB;" | sql

  # Which asynchronous I/O InnoDB settled on (io_uring, libaio, or none when both failed).
  grep -oE 'InnoDB: (Using (liburing|io_uring|Linux native AIO)|.*native AIO.*)' \
    "$work/err-$tag.log" | head -1 >"$work/aio-$tag" || true
  echo "$tag: $(cat "$work/aio-$tag")"

  local start=$SECONDS pids=() i failed=0 most=0 n workers=0
  for ((i = 0; i < clients; i++)); do
    client "$i" &
    pids+=($!)
  done
  while :; do  # the server's OS threads while the clients run
    n=$(threads_of "$mariadbd_pid")
    ((n > most)) && most=$n
    n=$(kernel_workers_of "$mariadbd_pid")
    ((n > workers)) && workers=$n
    local running=0
    for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null && running=1 && break; done
    ((running)) || break
    sleep 0.2
  done
  for i in "${pids[@]}"; do wait "$i" || failed=$((failed + 1)); done
  echo "SELECT COUNT(*), SUM(k), SUM(LENGTH(v)) FROM t;
        SELECT k, COUNT(*), SUM(LENGTH(v)) FROM t GROUP BY k ORDER BY k;
        SELECT MD5(GROUP_CONCAT(CONCAT(k, ':', v) ORDER BY v SEPARATOR ',')) FROM t;" |
    sql >"$work/final-$tag"
  echo "$tag: $clients clients in $((SECONDS - start)) s, $failed failed, at most $most OS threads" \
    "(and $workers io_uring kernel workers)"
  echo "$most" >"$work/threads-$tag"

  timeout 60 mariadb-admin --no-defaults -uroot -S "$work/sock" shutdown
  local status=0
  wait "$server_pid" || status=$?
  server_pid=""
  if ((failed != 0 || status != 0)); then
    echo "$tag: $failed clients failed, the server exited with $status"
    tail -20 "$work/err-$tag.log"
    return 1
  fi
  if grep -E '\[ERROR\]|Assertion|got signal' "$work/err-$tag.log"; then
    echo "$tag: the server logged the errors above"
    return 1
  fi
}

# The native run's and the shim's: the same table, the same aio, and few OS threads.
compare() {
  local native=$1 green=$2
  if ! diff "$work/final-$native" "$work/final-$green"; then
    echo "the final tables differ (native <, shim >)"
    exit 1
  fi
  echo "final table identical: $(head -1 "$work/final-$green")"
  if ! diff "$work/aio-$native" "$work/aio-$green"; then
    echo "InnoDB chose another asynchronous I/O under the shim (native <, shim >)"
    exit 1
  fi
  local threads carriers
  threads=$(cat "$work/threads-$green")
  # The carriers (GREEN_CARRIERS, else one per CPU), the monitor, and two more at most.
  carriers=${GREEN_CARRIERS:-$(nproc)}
  if ((threads > carriers + 3)); then
    echo "under the shim the server ran $threads OS threads: its threads did not become fibers"
    exit 1
  fi
}

run_load native native
run_load green green
compare native green
if [[ -n "$no_io_uring" ]]; then
  clients=10
  run_load native-libaio native "$no_io_uring"
  run_load green-libaio green "$no_io_uring"
  compare native-libaio green-libaio
  grep -q 'Linux native AIO' "$work/aio-green-libaio" ||
    { echo "with io_uring refused InnoDB did not fall back to libaio"; exit 1; }
fi
echo "mariadb: pass"
