#!/usr/bin/env bash
# integration.green_check: the verdicts of `green check` and of the launcher itself on a
# dynamic binary (can run, lists its cooperative imports), a static one built here with
# `cc -static` (cannot: LD_PRELOAD is ignored), a set-uid copy (cannot for anyone but its
# owner), a #! script (its interpreter is judged) and a running process without libgreen.
# Also: the launcher keeps an LD_PRELOAD list and maps every option to its GREEN_* variable.
# Usage: green_check_test.sh BUILD_DIR SOURCE_DIR. Deadlines on every step; the EXIT trap
# kills what it started.
set -euo pipefail
build=$1 source=$2
green=$build/green
source "$(dirname "$0")/scratch.sh"
chmod 755 "$work"  # the set-uid copy's owner must reach it
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# A dynamic binary: can run; accept and pthread_create are cooperative imports.
dyn=$build/integration/legacy_echo_server
timeout 60 "$green" check "$dyn" >"$work/dyn.txt" || { cat "$work/dyn.txt"; fail "dynamic: exit status"; }
grep -q "preload: yes" "$work/dyn.txt" || fail "dynamic: no 'preload: yes'"
grep -q "^verdict: can run under libgreen" "$work/dyn.txt" || fail "dynamic: verdict"
timeout 60 "$green" check --json "$dyn" >"$work/dyn.json"
[[ $(json "$work/dyn.json" "d['can_preload']") == True ]] || fail "dynamic: json can_preload"
for f in accept pthread_create; do
  [[ $(json "$work/dyn.json" "[i['status'] for i in d['imports'] if i['function']=='$f']") == "['cooperative']" ]] ||
    fail "dynamic: $f is not reported cooperative"
done
echo "ok: dynamic binary: can run, accept and pthread_create cooperative"

# A program importing blocking calls libgreen does not interpose: each is named.
cat >"$work/blocky.c" <<'C'
#include <stdio.h>
#include <sys/msg.h>
int main(void) {
    char line[64];
    if (fgets(line, sizeof line, stdin)) fputs(line, stdout);
    return msgrcv(-1, line, 8, 0, IPC_NOWAIT) == -1 ? 0 : 1;
}
C
timeout 60 cc -O1 -o "$work/blocky" "$work/blocky.c"
timeout 60 "$green" check --json "$work/blocky" >"$work/blocky.json"
for f in fgets msgrcv; do
  [[ $(json "$work/blocky.json" "[i['status'] for i in d['imports'] if i['function']=='$f']") == "['blocks the carrier']" ]] ||
    fail "blocking imports: $f is not reported as blocking the carrier"
done
timeout 60 "$green" check "$work/blocky" >"$work/blocky.txt"
grep -q "^    blocks the carrier (" "$work/blocky.txt" && grep -q "fgets (blocky)" "$work/blocky.txt" &&
  grep -q "msgrcv (blocky)" "$work/blocky.txt" ||
  { cat "$work/blocky.txt"; fail "blocking imports: the human output does not name them"; }
echo "ok: fgets and msgrcv reported as blocking the carrier"

# A static binary: cannot; the launcher says so before running it, and --strict refuses.
printf '#include <stdio.h>\nint main(void) { puts("static ran"); return 0; }\n' >"$work/static.c"
timeout 60 cc -static -o "$work/static" "$work/static.c"
status=0
timeout 60 "$green" check "$work/static" >"$work/static.txt" || status=$?
((status == 1)) || { cat "$work/static.txt"; fail "static: exit status $status, not 1"; }
grep -q "preload: NO, it is statically linked" "$work/static.txt" || fail "static: reason"
timeout 60 "$green" check --json "$work/static" >"$work/static.json" || true
[[ $(json "$work/static.json" "d['can_preload']") == False ]] || fail "static: json"
out=$(timeout 30 "$green" "$work/static" 2>"$work/static.err")
[[ $out == "static ran" ]] || fail "static: the launcher did not run it"
grep -q "will run without libgreen: it is statically linked" "$work/static.err" ||
  fail "static: the launcher gave no warning: $(cat "$work/static.err")"
status=0
timeout 30 "$green" --strict "$work/static" >/dev/null 2>&1 || status=$?
((status == 126)) || fail "static: --strict ran it (status $status)"
echo "ok: static binary: cannot, the launcher warns, --strict refuses"

# A set-uid copy. Owned by someone else (we are root: chown it to nobody) the loader would
# ignore LD_PRELOAD; owned by us (not root: no chown) it works for us only, with a warning.
cp "$dyn" "$work/suid"
if [[ $(id -u) == 0 ]]; then
  chown nobody "$work/suid"
  chmod u+s "$work/suid"
  status=0
  timeout 60 "$green" check "$work/suid" >"$work/suid.txt" || status=$?
  ((status == 1)) || { cat "$work/suid.txt"; fail "set-uid: exit status $status, not 1"; }
  grep -q "preload: NO, it is set-uid" "$work/suid.txt" || fail "set-uid: reason"
  timeout 30 "$green" --dry-run "$work/suid" >/dev/null 2>"$work/suid.err"
  grep -q "will run without libgreen: it is set-uid" "$work/suid.err" ||
    fail "set-uid: the launcher gave no warning: $(cat "$work/suid.err")"
  echo "ok: set-uid binary of another user: cannot, the launcher warns"
else
  chmod u+s "$work/suid"
  timeout 60 "$green" check "$work/suid" >"$work/suid.txt"
  grep -q "warning: it is set-uid .*yours" "$work/suid.txt" || fail "set-uid: warning"
  echo "ok: set-uid binary of our own: works for us, with a warning (not root: no chown)"
fi

# A #! script: its interpreter is what the loader runs.
printf '#!/usr/bin/env python3\nprint(1)\n' >"$work/script.py"
chmod +x "$work/script.py"
timeout 60 "$green" check "$work/script.py" >"$work/script.txt"
grep -q "script, run by .*python3" "$work/script.txt" || fail "script: interpreter not named"
echo "ok: a script is judged by its interpreter"

# A running process without libgreen.
"$dyn" 0 >"$work/native.out" &
native=$!
started+=("$native")
for _ in $(seq 100); do grep -q listening "$work/native.out" && break; sleep 0.1; done
status=0
timeout 60 "$green" check "$native" >"$work/pid.txt" || status=$?
((status == 1)) || fail "native process: exit status $status, not 1"
grep -q "libgreen: not loaded" "$work/pid.txt" || fail "native process: $(cat "$work/pid.txt")"
kill -9 "$native"
wait "$native" 2>/dev/null || true
started=()
echo "ok: a process without libgreen is reported so"

# The launcher: options become GREEN_* settings, an existing LD_PRELOAD list is kept after
# libgreen, and a libgreen.so already in it is not loaded twice.
other=/lib/x86_64-linux-gnu/libm.so.6
out=$(LD_PRELOAD="$other:$build/libgreen.so" timeout 30 "$green" --dry-run --carriers=2 \
  --stats --stats-signal USR2 --monitor=100 --log=info --disable -- /bin/true)
for want in "LD_PRELOAD=$(readlink -f "$build/libgreen.so"):$other " GREEN_CARRIERS=2 \
    GREEN_STATS=1 GREEN_STATS_SIGNAL=USR2 GREEN_MONITOR_MS=100 GREEN_LOG=info GREEN_DISABLE=1; do
  [[ $out == *"$want"* ]] || fail "launcher: '$want' missing from: $out"
done
got=$(LD_PRELOAD=/lib/x86_64-linux-gnu/libc.so.6 timeout 30 "$green" --carriers=1 -- \
  sh -c 'echo "$LD_PRELOAD $GREEN_CARRIERS"')
[[ $got == "$(readlink -f "$build/libgreen.so"):/lib/x86_64-linux-gnu/libc.so.6 1" ]] ||
  fail "launcher: the program saw '$got'"
# Every setting of shim/settings.cpp has an option, documented in docs/green.md.
for var in $(grep -o '"GREEN_[A-Z_]*[A-Z]"' "$source/shim/settings.cpp" | tr -d '"' | sort -u); do
  grep -q "|$var|" "$source/scripts/green.in" || fail "launcher: no option sets $var"
  grep -q "\`$var" "$source/docs/green.md" || fail "docs/green.md does not name $var"
done
echo "ok: the launcher maps every setting and keeps LD_PRELOAD"
