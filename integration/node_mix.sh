#!/usr/bin/env bash
# Node.js (Debian's nodejs) runs node_mix.js natively and under the shim: HTTP on 127.0.0.1,
# 200 concurrent fetches, fs.promises, crypto.pbkdf2 and dns.lookup, all at once. Both runs
# must print the expected lines before their deadline, and under the shim Node's threads
# (V8's platform workers, libuv's thread pool, the inspector's I/O thread) must be fibers.
# Node's work is spread over threads that never park for long (pbkdf2, V8's concurrent
# sweeping and compiling), so this passes under the shim only once fibers are pre-empted.
# Usage: node_mix.sh LIBGREEN.so      Exit 77 (skipped) when /usr/bin/node is not installed.
set -euo pipefail
lib=$1
node=/usr/bin/node
if [[ ! -x $node ]]; then
  echo "nodejs is not installed (apt-get install nodejs): skipped"
  exit 77
fi
script=$(dirname "$0")/node_mix.js
work=$(mktemp -d)
# shellcheck source=integration/bounded_run.sh
source "$(dirname "$0")/bounded_run.sh"
trap 'kill_bounded_run; rm -rf "$work"' EXIT

# The digest covers the 200 bodies; the key is PBKDF2-HMAC-SHA256("libgreen", "salt0",
# 300000 iterations, 32 bytes); localhost is the first localhost line of /etc/hosts.
expected="fetch: 200 of 200 bodies of 262144 bytes intact, sha256 of all c56948f4183bb4d380d3b7d0d8c0d57b3c1bafa372da72d692f75197e437eebd
fs: 8 of 8 files of 1048576 bytes read back the same
pbkdf2: 4 keys, salt0 gives 6126de3ce96778362c903e7ce3dce75eac31f6b03fa7c10bb9b405455476f508
dns: localhost is IPv4"

# Natively Node runs 11 OS threads here (main, 4 V8 platform workers, V8's delayed-task
# scheduler, the inspector's I/O thread, 4 libuv pool threads once the pool is used). Under
# the shim they are all fibers on the carriers (one per CPU), beside the monitor (time slices,
# the watchdog asked for below). The bound leaves room for one more of libgreen's own (libuv's
# pool behind its resolver), never for Node's ten.
max_green_threads=$(($(carriers) + 2))

status=0
# Node's temporary files go to $work: a run that gives up cannot remove its own.
bounded_run native 60 env "TMPDIR=$work" "$node" "$script"
echo "native: $run_ms ms, at most $run_threads OS threads"
check_run native "$expected" || status=1
native_threads=$run_threads

green_run Node "$max_green_threads" "$native_threads" "$expected" \
  "TMPDIR=$work" "LD_PRELOAD=$lib" "$node" "$script" || status=1
((status == 0)) && echo "node mix: the same natively and under the shim"
exit $status
