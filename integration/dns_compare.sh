#!/usr/bin/env bash
# Resolves resolve_table's inputs natively and under libgreen and requires identical output.
#
#   dns_compare.sh RESOLVE_TABLE LIBGREEN
#
# glibc's resolver always asks port 53 of the nameservers in /etc/resolv.conf, so to give
# both runs the same DNS server the comparison runs in private user, network and mount
# namespaces (unshare -rnm): there a dnsmasq on 127.0.0.1:53 serves the test names, and a
# test /etc/hosts and /etc/resolv.conf are bind-mounted over the real ones. Without
# namespaces, the table runs without the DNS-served names, still natively and under the shim.
set -euo pipefail

table=$1
lib=$2

if [[ ${3:-} != --inside ]]; then
    if unshare -rnm true 2>/dev/null; then
        exec unshare -rnm "$0" "$table" "$lib" --inside
    fi
    echo "dns_compare: no user namespaces here; comparing the table without DNS-served names"
    diff <("$table") <(LD_PRELOAD=$lib "$table")
    echo "dns_compare: identical ($("$table" | wc -l) cases)"
    exit 0
fi

# In the namespaces: we are root of a network with only lo.
ip link set lo up
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
cat >"$dir/hosts" <<'HOSTS'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
192.0.2.10 multi.test multialias
2001:db8::10 multi.test
192.0.2.11 multi.test
10.1.2.3 web.test www.web.test
2001:db8::99 v6only.test
HOSTS
echo "nameserver 127.0.0.1" >"$dir/resolv.conf"
mount --bind "$dir/hosts" /etc/hosts
mount --bind "$dir/resolv.conf" /etc/resolv.conf

# Runs the table with its DNS names natively and under the shim; sets `native`. Exits with
# the difference when the two outputs differ.
compare_table() {  # WHAT-DIFFERS
    native=$("$table" --dns)
    local green
    green=$(LD_PRELOAD=$lib "$table" --dns)
    if [[ "$native" != "$green" ]]; then
        echo "dns_compare: $1 (< native, > under libgreen):"
        diff <(echo "$native") <(echo "$green") || true
        exit 1
    fi
}

# -d: stay in the foreground and keep our uid (a user namespace cannot switch groups).
serve() {  # PORT RECORDS...
    local port=$1
    shift
    dnsmasq -d --log-facility="$dir/dnsmasq-$port.log" --port="$port" --listen-address=127.0.0.1 \
        --bind-interfaces --no-resolv --no-hosts --conf-file=/dev/null --pid-file= --local=/test/ \
        "$@" 2>/dev/null &
}
serve 53 --host-record=name.test,127.0.0.1 --host-record=dual.test,192.0.2.20,2001:db8::20 \
    --host-record=six.test,2001:db8::6 --cname=alias.test,name.test
# A second server that answers name.test differently: proof that under the shim the lookups
# are ours (c-ares with GREEN_DNS_SERVERS), not glibc's.
serve 5353 --host-record=name.test,192.0.2.53
for _ in $(seq 100); do
    getent hosts name.test >/dev/null && break
    sleep 0.05
done

compare_table "results differ"
# Both runs must have reached the server and the hosts file, not failed alike.
grep -q '^getaddrinfo(alias.test, 80, family=0 flags=0x2 .* 127.0.0.1/80 canon=name.test' <<<"$native"
grep -q '^getaddrinfo(multialias, 80, family=0 flags=0x2 .*canon=multi.test' <<<"$native"
grep -q '^getnameinfo(192.0.2.20, 80, flags=0x8, hostlen=256) = 0 host=dual.test' <<<"$native"
echo "dns_compare: identical ($(wc -l <<<"$native") cases)"

for _ in $(seq 100); do  # the second server may still be starting
    other=$(GREEN_DNS_SERVERS=127.0.0.1:5353 LD_PRELOAD=$lib getent hosts name.test || true)
    [[ $other == "192.0.2.53 "* ]] && break
    sleep 0.05
done
[[ $other == "192.0.2.53 "* ]] || { echo "dns_compare: GREEN_DNS_SERVERS not used: $other"; exit 1; }
echo "dns_compare: GREEN_DNS_SERVERS honoured"

# A source c-ares cannot serve: the shim hands the calls to glibc on libuv's thread pool.
# (glibc skips a module it cannot load, so both runs still resolve through files and dns.)
printf 'hosts: files mdns4_minimal [NOTFOUND=return] dns\n' >"$dir/nsswitch.conf"
mount --bind "$dir/nsswitch.conf" /etc/nsswitch.conf
compare_table "with other nsswitch sources, results differ"
echo "dns_compare: identical through glibc on the thread pool ($(wc -l <<<"$native") cases)"
