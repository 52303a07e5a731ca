# shellcheck shell=bash disable=SC2034  # work and started are the sourcing script's
# Sourced by the install, green check and package tests: a scratch directory $work, removed
# at exit after every process whose pid is in $started is killed and $at_exit (a command, if
# set) has run; `fail MESSAGE` ends the test with a line that says why.
work=$(mktemp -d)
started=()
at_exit=""
scratch_cleanup() {
  local pid
  for pid in "${started[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [[ -n $at_exit ]]; then $at_exit || true; fi
  rm -rf "$work"
}
trap scratch_cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
