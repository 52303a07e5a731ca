#!/usr/bin/env bash
# The exported symbols of libgreen.so must be exactly the functions listed in
# docs/compat.md's table of interposed functions (DESIGN.md, problem 12).
set -euo pipefail
lib=$1 compat=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TW]$/ {print $3}' | sort -u)
documented=$(sed -n '/^## Interposed functions/,/^## /p' "$compat" |
  grep -oE '^\| `[A-Za-z_0-9]+`' | tr -d '|` ' | sort -u)
if [[ "$exported" != "$documented" ]]; then
  echo "exported by libgreen.so but not in docs/compat.md:"
  comm -23 <(echo "$exported") <(echo "$documented")
  echo "in docs/compat.md but not exported:"
  comm -13 <(echo "$exported") <(echo "$documented")
  exit 1
fi
echo "exports match docs/compat.md ($(echo "$exported" | wc -l) symbols)"
