#!/usr/bin/env bash
# integration.install: `cmake --install` into a temporary prefix puts every file where Debian
# would; legacy_http_server started by the *installed* `green` launcher answers 40 concurrent
# curl requests byte for byte while it keeps a few OS threads, with the installed library
# mapped; `green check PID` sees it active; `man` reads the installed pages.
# Usage: install_test.sh BUILD_DIR MULTIARCH. Every step has a deadline; the EXIT trap kills
# what the test started and removes the prefix.
set -euo pipefail
build=$1 multiarch=$2
source "$(dirname "$0")/scratch.sh"

prefix=$work/prefix
timeout 120 cmake --install "$build" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log"; fail "cmake --install"; }
for f in bin/green "lib/$multiarch/libgreen.so" libexec/libgreen/green_check.py \
    share/libgreen/compat.tsv share/libgreen/gdb/green.py share/doc/libgreen/README.md \
    share/doc/libgreen/compat.md share/man/man1/green.1.gz share/man/man7/libgreen.7.gz; do
  [[ -e $prefix/$f ]] || fail "$f not installed"
done
[[ -x $prefix/bin/green ]] || fail "bin/green is not executable"
echo "ok: installed into a temporary prefix"

MANPATH=$prefix/share/man timeout 30 man -P cat green >"$work/green.man" 2>/dev/null
grep -q "green check" "$work/green.man" || fail "man green does not show the launcher's page"
MANPATH=$prefix/share/man timeout 30 man -P cat libgreen >"$work/libgreen.man" 2>/dev/null
grep -q GREEN_CARRIERS "$work/libgreen.man" || fail "man libgreen does not show the settings"
echo "ok: man green, man libgreen"

# The installed launcher, run from a directory far from the build tree.
cd "$work"
"$prefix/bin/green" --carriers=1 --stats="$work/stats.%p" --stats-signal=USR2 -- \
  "$build/integration/legacy_http_server" 0 300 >"$work/server.out" 2>"$work/server.err" &
server=$!
started+=("$server")
port=""
for _ in $(seq 100); do  # up to 10 s for "listening on PORT"
  port=$(sed -n 's/^listening on \([0-9]*\).*/\1/p' "$work/server.out")
  [[ -n $port ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.err"; fail "the server exited"; }
  sleep 0.1
done
[[ -n $port ]] || fail "the server did not say where it listens"
grep -q "$prefix/lib/$multiarch/libgreen.so" "/proc/$server/maps" ||
  fail "the server does not map the installed libgreen.so"

# 40 requests at once, each held 300 ms by its thread.
curls=()
for i in $(seq 40); do
  timeout 30 curl -sS --max-time 20 -D "$work/headers.$i" -o "$work/body.$i" \
    "http://127.0.0.1:$port/request/$i" &
  curls+=($!)
done
threads=0
while :; do
  n=$(awk '/^Threads:/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
  ((n > threads)) && threads=$n
  any=0
  for pid in "${curls[@]}"; do kill -0 "$pid" 2>/dev/null && any=1; done
  ((any)) || break
  sleep 0.02
done
for pid in "${curls[@]}"; do
  wait "$pid" || fail "a curl request failed"
done
printf 'Hello World!' >"$work/expected"
for i in $(seq 40); do
  cmp -s "$work/body.$i" "$work/expected" || fail "request $i: body $(od -c "$work/body.$i" | head -3)"
  grep -q "^HTTP/1.[01] 200" "$work/headers.$i" || fail "request $i: $(head -1 "$work/headers.$i")"
done
echo "ok: 40 concurrent requests answered byte for byte; at most $threads OS threads"
# One carrier, and the monitor thread for time slices; never one per request.
((threads <= 3)) || fail "$threads OS threads: the requests ran on threads, not fibers"

timeout 30 "$prefix/bin/green" check "$server" >"$work/check.txt" || {
  cat "$work/check.txt"; fail "green check $server says libgreen is not active"; }
grep -q "libgreen: loaded ($prefix/lib/$multiarch/libgreen.so), active" "$work/check.txt" ||
  { cat "$work/check.txt"; fail "green check PID did not name the installed library"; }
timeout 30 "$prefix/bin/green" check --dump --json "$server" >"$work/check.json"
fibers=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["active"], d["stats"]["values"]["total.fibers_created"])' "$work/check.json")
# main, and one fiber per request.
[[ $fibers == "True 41" ]] || fail "green check --dump --json: active and fibers created: $fibers"
echo "ok: green check $server: active; its fresh stats count 41 fibers"

kill -TERM "$server"
timeout 10 tail --pid="$server" -f /dev/null || fail "the server did not end on SIGTERM"
started=()
echo "ok: installed launcher and library work"
