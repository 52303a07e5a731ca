#!/usr/bin/env bash
# libgreen's benchmarks: every workload natively, under the shim and (where there is one)
# against an event-loop reference, in one run on one machine, printed as markdown rows with
# the ratios. Never part of the test suite. Results go to docs/benchmarks.md by hand; the
# headline comparisons are also drawn as SVG (build/bench/plots/, see below).
#
#   scripts/bench.sh [quick] [SECTION...]   quick: smaller counts, for a smoke run;
#                                           SECTION: the numbers of the sections to run
#                                           (all of them when none is named)
set -euo pipefail
cd "$(dirname "$0")/.."
B=$PWD/build
G=$B/libgreen.so
quick=
if [[ ${1:-} == quick ]]; then
    quick=1
    shift
fi
sections=" $* "
want() { [[ $sections == "  " || $sections == *" $1 "* ]]; }
ulimit -n "$(ulimit -Hn)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
field() { grep -o "$1=[0-9.]*" <<<"$2" | head -1 | cut -d= -f2; }

# Samples a process's OS threads and peak RSS until it ends: echo "threads rss_kb".
sample_start() {
    local pid=$1 out=$2
    (max=0; rss=0
     while [[ -r /proc/$pid/status ]]; do
         t=$(awk '/^Threads:/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
         r=$(awk '/^VmHWM:/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
         (( t > max )) && max=$t
         (( r > rss )) && rss=$r
         echo "$max $rss" >"$out.new" && mv "$out.new" "$out"  # never seen half-written
         sleep 0.05
     done) &
}

# Runs a load command while sampling the server $PID; sets OUT (the command's output),
# THREADS (peak OS threads of the server) and RSS (its peak RSS in KiB).
measure() {
    local s
    s=$(mktemp)
    sample_start "$PID" "$s"
    OUT=$("$@" 2>&1 || true)
    sleep 0.1  # one more sample after the load
    read -r THREADS RSS <"$s" || true
}

# ab's total time, mean latency and failed count from its output: "total mean failed".
ab_numbers() {
    echo "$(grep -o 'Time taken for tests: *[0-9.]*' <<<"$1" | grep -o '[0-9.]*$')" \
        "$(grep -m1 -o 'Time per request: *[0-9.]*' <<<"$1" | grep -o '[0-9.]*$')" \
        "$(grep -o 'Failed requests: *[0-9]*' <<<"$1" | grep -o '[0-9]*$')"
}

# Starts a server (its "listening on PORT" line on stdout); sets PID, PORT and LOG (the file
# that holds its output).
start_server() {
    LOG=$(mktemp)
    "$@" >"$LOG" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        PORT=$(grep -o 'listening on [0-9]*' "$LOG" | grep -o '[0-9]*$' || true)
        [[ -n $PORT ]] && return 0
        sleep 0.05
    done
    echo "server did not start: $*" >&2
    cat "$LOG" >&2
    exit 1
}
# The echo server named libuv (the event-loop reference), native or libgreen.
start_echo_server() {
    case $1 in
        libuv) start_server "$B/bench/uv_echo_server" 0 ;;
        native) start_server "$B/integration/legacy_echo_server" 0 ;;
        libgreen) start_server env LD_PRELOAD="$G" "$B/integration/legacy_echo_server" 0 ;;
    esac
}
stop_server() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }

# The tables go to stdout and to $B/bench/results.md, from which the headline comparisons are
# drawn as SVG into $B/bench/plots/ (scripts/plot_bench.py; docs/plots/ is drawn the same way
# from docs/benchmarks.md's tables).
mkdir -p "$B/bench/plots"
{
echo "# libgreen benchmarks, $(date -u +%F), $(nproc) cores, $(uname -r)"
echo

if want 1; then
    echo "## 1. Switch cost (ns per round trip; lower is better)"
    echo "| round trip | native threads | libgreen | threads / libgreen |"
    echo "|---|---|---|---|"
    n=$([[ $quick ]] && echo 20000 || echo 200000)
    for mode in yield pipe; do
        a=$(field ns_per_round_trip "$("$B/bench/switch" "$mode" "$n")")
        b=$(field ns_per_round_trip "$(LD_PRELOAD=$G "$B/bench/switch" "$mode" "$n")")
        echo "| $mode | $a | $b | $(ratio "$a" "$b") |"
    done
    echo
fi

if want 2; then
    echo "## 2. Thread creation: create + join, 100 at a time"
    echo "| threads | native s | native peak RSS KiB | libgreen s | libgreen peak RSS KiB | native / libgreen time |"
    echo "|---|---|---|---|---|---|"
    n=$([[ $quick ]] && echo 10000 || echo 100000)
    a=$("$B/bench/spawn" "$n" 100)
    b=$(LD_PRELOAD=$G "$B/bench/spawn" "$n" 100)
    echo "| $n | $(field seconds "$a") | $(field peak_rss_kb "$a") | $(field seconds "$b") | $(field peak_rss_kb "$b") | $(ratio "$(field seconds "$a")" "$(field seconds "$b")") |"
    echo
fi

if want 3; then
    echo "## 3. Echo, 64-byte round trips for 5 s (thread per connection vs libuv event loop)"
    echo "| connections | server | round trips/s | p50 µs | p99 µs | peak RSS KiB | OS threads | vs libuv |"
    echo "|---|---|---|---|---|---|---|---|"
    counts=$([[ $quick ]] && echo "100 1000" || echo "100 1000 10000")
    for n in $counts; do
        declare -A rps=()
        for server in libuv native libgreen; do
            start_echo_server "$server"
            measure "$B/bench/echo_client" "$PORT" "$n" 5
            stop_server
            rps[$server]=$(field round_trips_per_s "$OUT")
            echo "| $n | $server | ${rps[$server]} | $(field p50_us "$OUT") | $(field p99_us "$OUT") | $RSS | $THREADS | $(ratio "${rps[$server]}" "${rps[libuv]}") |"
        done
    done
    echo
fi

if want 4; then
    echo "## 4. Slow upstream: legacy_http_server with a 1 s handler, 4×C requests at concurrency C"
    echo "| concurrency | client | server | total s | ideal s | total / ideal | mean latency ms | failed | peak RSS KiB | OS threads |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    counts=$([[ $quick ]] && echo "1000" || echo "1000 10000")
    for c in $counts; do
        for client in ab http_load; do
            for server in native libgreen; do
                if [[ $server == native ]]; then
                    start_server "$B/integration/legacy_http_server" 0 1000
                else
                    start_server env LD_PRELOAD="$G" "$B/integration/legacy_http_server" 0 1000
                fi
                if [[ $client == ab ]]; then
                    measure ab -q -r -s 60 -c "$c" -n $((4 * c)) "http://127.0.0.1:$PORT/"
                    read -r total mean failed <<<"$(ab_numbers "$OUT")"
                else
                    measure "$B/bench/http_load" "$PORT" "$c" $((4 * c))
                    total=$(field seconds "$OUT") mean=$(field mean_ms "$OUT") failed=$(field failed "$OUT")
                fi
                stop_server
                echo "| $c | $client | $server | $total | 4.0 | $(ratio "$total" 4) | $mean | $failed | $RSS | $THREADS |"
            done
        done
    done
    echo
fi

if want 5; then
    echo "## 5. uWSGI + Flask, a 1 s handler: 1,000 threads natively and under the shim, gevent"
    echo "| server | ab -c 1000 -n 2000 total s | mean latency ms | failed | peak RSS KiB | OS threads |"
    echo "|---|---|---|---|---|---|"
    if command -v uwsgi >/dev/null && [[ -e /usr/lib/uwsgi/plugins/gevent_python3_plugin.so ]]; then
        app=$(mktemp -d)
        printf 'import time\nfrom flask import Flask\napp = Flask(__name__)\n\n@app.route("/")\ndef slow():\n    time.sleep(1)\n    return "Hello World!"\n' >"$app/app.py"
        for mode in threads libgreen gevent; do
            port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
            common=(--http-socket "127.0.0.1:$port" --wsgi-file "$app/app.py" --callable app --listen 1024 --disable-logging)
            case $mode in
                threads) uwsgi --plugin python3 --threads 1000 "${common[@]}" >/dev/null 2>&1 & ;;
                libgreen) env LD_PRELOAD="$G" uwsgi --plugin python3 --threads 1000 "${common[@]}" >/dev/null 2>&1 & ;;
                gevent) uwsgi --plugin python3,gevent_python3 --gevent 1000 --gevent-monkey-patch "${common[@]}" >/dev/null 2>&1 & ;;
            esac
            PID=$!
            for _ in $(seq 200); do curl -s "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.05; done
            measure ab -q -r -s 60 -c 1000 -n 2000 "http://127.0.0.1:$port/"
            kill -KILL "$PID"  # uWSGI reloads on SIGTERM and waits for its threads on SIGINT
            wait "$PID" 2>/dev/null || true
            read -r total mean failed <<<"$(ab_numbers "$OUT")"
            echo "| $mode | $total | $mean | $failed | $RSS | $THREADS |"
        done
    else
        echo "| (uwsgi, uwsgi-plugin-gevent-python3 and python3-flask are not installed) | | | | | |"
    fi
    echo
fi

if want 6; then
    echo "## 6. Idle capacity: connections held open, nothing sent"
    echo "| connections | server | peak RSS KiB | KiB per connection | OS threads |"
    echo "|---|---|---|---|---|"
    counts=$([[ $quick ]] && echo "1000" || echo "10000")
    for n in $counts; do
        for server in native libgreen libuv; do
            start_echo_server "$server"
            base=$(awk '/^VmRSS:/ {print $2}' "/proc/$PID/status")
            measure "$B/bench/echo_client" "$PORT" "$n" 3 idle
            stop_server
            echo "| $n | $server | $RSS | $(ratio $((RSS - base)) "$n") | $THREADS |"
        done
    done
    echo
fi

if want 7; then
    echo "## 7. Overhead on programs that never block"
    echo "| program | native | libgreen | libgreen / native |"
    echo "|---|---|---|---|"
    iters=$([[ $quick ]] && echo 20000000 || echo 200000000)
    for t in 1 4; do
        a=$(field seconds "$("$B/bench/cpu_threads" "$t" "$iters")")
        b=$(field seconds "$(LD_PRELOAD=$G "$B/bench/cpu_threads" "$t" "$iters")")
        echo "| cpu_threads, $t threads (s) | $a | $b | $(ratio "$b" "$a") |"
    done
    if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
        for server in native libgreen; do
            dir=$(mktemp -d)
            pre=""
            [[ $server == libgreen ]] && pre="env LD_PRELOAD=$G"
            $pre redis-server --port 0 --unixsocket "$dir/s" --save "" --appendonly no --dir "$dir" >/dev/null 2>&1 &
            PID=$!
            for _ in $(seq 100); do [[ -S $dir/s ]] && break; sleep 0.05; done
            r=$(redis-benchmark -s "$dir/s" -n 200000 -c 50 -q -t set,get 2>/dev/null | tr '\r' '\n' | grep -o '[A-Z]*: [0-9.]* requests' | awk '{s += $2} END {print s / NR}')
            stop_server
            declare "redis_$server=$r"
        done
        echo "| redis-server, SET+GET mean (requests/s) | $redis_native | $redis_libgreen | $(ratio "$redis_libgreen" "$redis_native") |"
    fi
    echo
fi

if want 8; then
    echo "## 8. Cost of the debugging aids (docs/debugging.md), under the shim"
    echo "| setting | yield round trip ns | echo, 1000 connections, round trips/s | vs no setting |"
    echo "|---|---|---|---|"
    n=$([[ $quick ]] && echo 200000 || echo 2000000)
    for setting in none GREEN_STATS=/dev/null GREEN_MONITOR_MS=100 GREEN_DEADLOCK=off; do
        envs=()
        [[ $setting != none ]] && envs=("$setting")
        y=$(field ns_per_round_trip "$(env "${envs[@]}" LD_PRELOAD="$G" "$B/bench/switch" yield "$n")")
        start_server env "${envs[@]}" LD_PRELOAD="$G" "$B/integration/legacy_echo_server" 0
        measure "$B/bench/echo_client" "$PORT" 1000 3
        stop_server
        e=$(field round_trips_per_s "$OUT")
        [[ $setting == none ]] && { base_y=$y; base_e=$e; }
        echo "| $setting | $y | $e | yield $(ratio "$y" "$base_y"), echo $(ratio "$e" "$base_e") |"
    done
    echo
fi

if want 9; then
    echo "## 9. Time slices: what pre-emption costs and what it buys"
    echo "| setting | yield ns | pipe ns | cpu_threads 4 (s) | sleeper late mean / p99 / max µs, 2 threads computing | spin-wait on a 50 ms sleeper (ms) |"
    echo "|---|---|---|---|---|---|"
    n=$([[ $quick ]] && echo 20000 || echo 200000)
    iters=$([[ $quick ]] && echo 20000000 || echo 200000000)
    secs=$([[ $quick ]] && echo 1 || echo 3)
    slice_row() {  # label, then the command prefix (empty: native)
        local label=$1
        shift
        local y p c w
        y=$(field ns_per_round_trip "$("$@" "$B/bench/switch" yield "$n")")
        p=$(field ns_per_round_trip "$("$@" "$B/bench/switch" pipe "$n")")
        c=$(field seconds "$("$@" "$B/bench/cpu_threads" 4 "$iters")")
        # Without slices the computing threads never let the sleeper run: the run is cut off.
        w=$("$@" timeout $((secs + 10)) "$B/bench/wakeup_latency" 2 "$secs" || echo "spin_wait_ms=hung")
        echo "| $label | $y | $p | $c | $(field mean_us "$w") / $(field p99_us "$w") / $(field max_us "$w") | $(grep -o 'spin_wait_ms=[0-9a-z.]*' <<<"$w" | cut -d= -f2) |"
    }
    slice_row "native threads" env
    for setting in GREEN_PREEMPT=0 GREEN_PREEMPT=calls GREEN_TIMESLICE_US=10000 \
                   "GREEN_TIMESLICE_US=5000 (default)" GREEN_TIMESLICE_US=2000; do
        slice_row "$setting" env "${setting%% *}" LD_PRELOAD="$G"
    done
fi

if want 10; then
    echo "## 10. Several carriers (issue 15): native threads, GREEN_CARRIERS=1, the default ($(nproc) here)"
    echo
    # Each row: a label, then the command prefix that runs a program that way.
    carrier_runs=("native threads|env" "1 carrier|env GREEN_CARRIERS=1 LD_PRELOAD=$G"
                  "default carriers|env LD_PRELOAD=$G")

    iters=$([[ $quick ]] && echo 20000000 || echo 200000000)
    echo "### 4 CPU-bound threads: cpu_threads 4 $iters (s; lower is better)"
    echo "| run | seconds | vs native |"
    echo "|---|---|---|"
    for run in "${carrier_runs[@]}"; do
        read -ra pre <<<"${run#*|}"
        s=$(field seconds "$("${pre[@]}" "$B/bench/cpu_threads" 4 "$iters")")
        [[ ${run%%|*} == native* ]] && base=$s
        echo "| ${run%%|*} | $s | $(ratio "$s" "$base") |"
    done
    echo

    # ~4 ms of hashing on this machine class (the server prints its own measure), then 20 ms
    # asleep: on 2 cores the CPU sets the pace from about 12 connections on.
    kib=2800 c=50 n=$([[ $quick ]] && echo 500 || echo 2000)
    echo "### Compute then wait: legacy_http_server 0 20 $kib (hash, then 20 ms asleep), http_load PORT $c $n"
    echo "| run | hashing ms per request | requests/s | mean latency ms | failed | OS threads | vs native |"
    echo "|---|---|---|---|---|---|---|"
    for run in "${carrier_runs[@]}"; do
        read -ra pre <<<"${run#*|}"
        start_server "${pre[@]}" "$B/integration/legacy_http_server" 0 20 "$kib"
        hash_ms=$(field hash_ms "$(cat "$LOG")")
        measure "$B/bench/http_load" "$PORT" "$c" "$n"
        stop_server
        rps=$(awk -v r="$(field requests "$OUT")" -v s="$(field seconds "$OUT")" 'BEGIN { printf "%.0f", r / s }')
        [[ ${run%%|*} == native* ]] && base=$rps
        echo "| ${run%%|*} | $hash_ms | $rps | $(field mean_ms "$OUT") | $(field failed "$OUT") | $THREADS | $(ratio "$rps" "$base") |"
    done
    echo

    c=$([[ $quick ]] && echo 1000 || echo 10000)
    echo "### Slow upstream: legacy_http_server 0 1000, http_load PORT $c $((4 * c)) (ideal 4.0 s)"
    echo "| run | total s | total / ideal | mean latency ms | failed | peak RSS KiB | OS threads |"
    echo "|---|---|---|---|---|---|---|"
    for run in "${carrier_runs[@]}"; do
        read -ra pre <<<"${run#*|}"
        start_server "${pre[@]}" "$B/integration/legacy_http_server" 0 1000
        measure "$B/bench/http_load" "$PORT" "$c" $((4 * c))
        stop_server
        total=$(field seconds "$OUT")
        echo "| ${run%%|*} | $total | $(ratio "$total" 4) | $(field mean_ms "$OUT") | $(field failed "$OUT") | $RSS | $THREADS |"
    done
    echo

    n=$([[ $quick ]] && echo 5000 || echo 20000)
    echo "### Blocking round trip between two threads main made: pingpong pipe|cond $n"
    echo "(with two carriers the two threads land on different ones: every hand-off crosses)"
    echo "| hand-off | run | the two threads on | round trip ns | wake-up p50 ns | wake-up p99 ns | vs native | deadlock reports |"
    echo "|---|---|---|---|---|---|---|---|"
    err=$(mktemp)
    for mode in pipe cond; do
        for run in "${carrier_runs[@]}"; do
            read -ra pre <<<"${run#*|}"
            out=$("${pre[@]}" "$B/bench/pingpong" "$mode" "$n" 2>"$err")
            rt=$(field ns_per_round_trip "$out")
            [[ ${run%%|*} == native* ]] && base=$rt
            case ${run%%|*}/$(field same_os_thread "$out") in
                native*) on="2 OS threads" ;;
                */1) on="1 carrier" ;;
                *) on="2 carriers" ;;
            esac
            echo "| $mode | ${run%%|*} | $on | $rt | $(field wake_p50_ns "$out") | $(field wake_p99_ns "$out") | $(ratio "$rt" "$base") | $(grep -c 'deadlock: every thread' "$err" || true) |"
        done
    done
    rm -f "$err"
    echo
fi
} | tee "$B/bench/results.md"
python3 scripts/plot_bench.py "$B/bench/results.md" "$B/bench/plots" >&2
