#!/usr/bin/env bash
# Runs python_threads.py natively and under the shim; both must print the expected lines.
# Usage: python_threads.sh LIBGREEN.so
set -euo pipefail
lib=$1
script=$(dirname "$0")/python_threads.py
python=/usr/bin/python3
expected="alarm interrupted recv after 1 s
sendall delivered 10485760 bytes, intact
native ids distinct: True"
native=$(timeout 60 "$python" "$script")
green=$(LD_PRELOAD=$lib timeout 60 "$python" "$script")
status=0
for run in native green; do
  out=${!run}
  if [[ "$out" != "$expected" ]]; then
    echo "$run run printed:"; echo "$out"; status=1
  fi
done
((status == 0)) && echo "python threads: the same natively and under the shim"
exit $status
