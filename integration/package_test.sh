#!/usr/bin/env bash
# integration.package: scripts/package.sh builds a .deb whose contents are the install rules'
# (the library in the multiarch directory, the launcher, the table, docs, man pages) and whose
# Depends come from dpkg-shlibdeps. The extracted package runs a program under libgreen from
# wherever it is unpacked. As root (or with sudo -n) and when no libgreen package is installed
# already, it also installs it with dpkg -i, runs /usr/bin/green, removes it with dpkg -r and
# checks that no file of it is left; otherwise it says why it did not.
# Usage: package_test.sh SOURCE_DIR BUILD_DIR MULTIARCH. Deadlines on every step.
set -euo pipefail
source=$1 build=$2 multiarch=$3
source "$(dirname "$0")/scratch.sh"
SUDO=""

deb=$(timeout 240 "$source/scripts/package.sh" "$build" "$work") || fail "scripts/package.sh"
[[ -f $deb ]] || fail "no .deb at '$deb'"
dpkg-deb --info "$deb" >"$work/info"
grep -q "^ Package: libgreen" "$work/info" || fail "package name"
grep -q "^ Depends:.*libuv1" "$work/info" || fail "Depends lacks libuv1: $(grep Depends "$work/info")"
dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/contents"
for f in /usr/bin/green "/usr/lib/$multiarch/libgreen.so" /usr/share/libgreen/compat.tsv \
    /usr/libexec/libgreen/green_check.py /usr/share/man/man1/green.1.gz \
    /usr/share/man/man7/libgreen.7.gz /usr/share/doc/libgreen/compat.md; do
  grep -qx "$f" "$work/contents" || fail "$f is not in the package"
done
echo "ok: $(basename "$deb") built, $(grep -vc '/$' "$work/contents") files"

# Unpacked anywhere, its launcher finds its own library.
dpkg-deb -x "$deb" "$work/root"
timeout 30 "$work/root/usr/bin/green" --stats="$work/x.stats" -- /bin/sleep 0.1
grep -q "^green.stats.end=1" "$work/x.stats" || fail "the unpacked package's green did not load libgreen"
timeout 60 "$work/root/usr/bin/green" check /bin/sleep >/dev/null || fail "unpacked: green check"
echo "ok: green runs from the unpacked package"

if [[ $(id -u) != 0 ]]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "not root and no sudo -n: dpkg -i / dpkg -r not tried (dpkg-deb -x above instead)"
    exit 0
  fi
fi
# One installer at a time on this machine (other work trees run this test too).
exec 9>/tmp/libgreen-package-test.lock
timeout 300 flock 9 || fail "another package test held the lock for 300 s"
if dpkg-query -W -f='${Status}' libgreen 2>/dev/null | grep -q "ok installed"; then
  echo "a libgreen package is installed already (not by this test): dpkg -i / -r not tried"
  exit 0
fi
dpkg_retry() {  # dpkg fails at once while apt holds its lock: retry for up to 120 s
  local i
  for i in $(seq 60); do
    $SUDO timeout 120 dpkg "$@" >"$work/dpkg.log" 2>&1 && return 0
    grep -q "lock" "$work/dpkg.log" || break
    sleep 2
  done
  cat "$work/dpkg.log"
  return 1
}
remove_ours() { $SUDO dpkg -r libgreen >/dev/null 2>&1; }
at_exit=remove_ours  # a failure below must not leave the package installed
dpkg_retry -i "$deb" || fail "dpkg -i"
[[ $(command -v green) == /usr/bin/green ]] || fail "green is not /usr/bin/green"
timeout 30 green --stats="$work/y.stats" -- /bin/sleep 0.1
grep -q "^green.stats.end=1" "$work/y.stats" || fail "the installed green did not load libgreen"
grep -q "/usr/lib/$multiarch/libgreen.so" <(timeout 30 green --dry-run /bin/true) ||
  fail "the installed green does not use /usr/lib/$multiarch/libgreen.so"
if grep -qs "path-exclude=*/usr/share/man" /etc/dpkg/dpkg.cfg.d/*; then
  echo "dpkg is told not to install man pages here (path-exclude): man green not tried"
else
  MANPATH=/usr/share/man timeout 30 man -P cat green >"$work/green.man" 2>/dev/null
  grep -q "green check" "$work/green.man" || fail "man green"
fi
echo "ok: dpkg -i installed it; green and man green work"
dpkg_retry -r libgreen || fail "dpkg -r"
at_exit=""
left=()
while read -r f; do
  [[ $f == */ ]] && continue
  [[ -e $f || -L $f ]] && left+=("$f")
done <"$work/contents"
((${#left[@]} == 0)) || fail "dpkg -r left: ${left[*]}"
state=$(dpkg-query -W -f='${db:Status-Abbrev}' libgreen 2>/dev/null || true)
[[ -z ${state// /} || $state == n* ]] || fail "dpkg -r left the package in state '$state'"
[[ -z $(compgen -G "/var/lib/dpkg/info/libgreen.*") ]] ||
  fail "dpkg -r left $(echo /var/lib/dpkg/info/libgreen.*)"
for d in /usr/share/libgreen /usr/libexec/libgreen /usr/share/doc/libgreen; do
  [[ ! -e $d ]] || fail "dpkg -r left the directory $d"
done
echo "ok: dpkg -r removed every file"
