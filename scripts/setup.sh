#!/usr/bin/env bash
# Installs libgreen's build and test dependencies from Debian's packages and builds it.
# Works on a fresh Debian 12 machine as root (or with sudo). The library lands at
# build/libgreen.so. Usage: scripts/setup.sh [--no-install]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libuv1-dev libboost-context-dev libc-ares-dev   # the runtime's libraries
  googletest libgtest-dev catch2                  # test frameworks
  pandoc man-db dpkg-dev binutils                 # man pages, the .deb, green check (nm)
  curl wget apache2-utils python3 strace gdb      # stock programs the tests drive
  dnsmasq-base iproute2 util-linux libc-bin       # the DNS tests' server and namespaces
  memcached libmemcached-tools redis-server redis-tools nginx-light  # the stock-program suite
  uwsgi-core uwsgi-plugin-python3 uwsgi-plugin-gevent-python3 python3-flask  # scripts/bench.sh
  mariadb-server mariadb-client                   # integration.mariadb (its own data dir)
  liburing-dev                                    # the uring semantic tests (liburing.h)
)

if [[ "${1:-}" != "--no-install" ]]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -q
    # Daemons the packages bring (mariadb, redis, memcached, nginx) are not started: the tests
    # run their own instances. policy-rc.d is Debian's switch for that (invoke-rc.d asks it).
    policy=/usr/sbin/policy-rc.d
    made_policy=0
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
      $SUDO chmod 755 "$policy"
      made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
    if ((made_policy)); then $SUDO rm -f "$policy"; fi
  fi
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGREEN_WERROR=ON
cmake --build build
echo "setup: built $(pwd)/build/libgreen.so"
