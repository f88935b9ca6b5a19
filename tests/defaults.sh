#!/bin/sh
# allocd without --config: the compiled-in file when it exists, else the built-in pools, saying so;
# --no-config always the built-in pools; an explicit --config that does not exist is an error.
#   defaults.sh ALLOCD ALLOCCTL DEFAULT_CONFIG EXAMPLE_CONFIG
# As root it runs in a private mount namespace with a tmpfs over DEFAULT_CONFIG's directory's
# parent, so that it can write the default file, and never sees the one this machine may have.
set -eu
allocd=$1 allocctl=$2 default=$3 example=$4
confdir=$(dirname "$default")
if [ "$(id -u)" -eq 0 ] && [ -z "${DEFAULTS_UNSHARED:-}" ] && [ -d "$(dirname "$confdir")" ] &&
        unshare -m --propagation private true 2>/dev/null; then
        exec env DEFAULTS_UNSHARED=1 unshare -m --propagation private sh -c \
                'mount -t tmpfs tmpfs "$(dirname "$(dirname "$3")")" && exec "$0" "$@"' "$0" "$@"
fi
name=defaults
. "$(dirname "$0")/scratch.sh"

[ ! -e "$default" ] || {
        echo "defaults: SKIP: $default exists on this machine (run as root to hide it)"
        exit 77
}

out=$("$allocd" --check-config) || fail "--check-config without a default file failed: $out"
[ "$out" = "no $default: allocd would serve the built-in pools host (256 MiB) and fpga0" ] ||
        fail "--check-config without a default file says: $out"
out=$("$allocd" --check-config --no-config) || fail "--check-config --no-config failed: $out"
[ "$out" = "--no-config: allocd would serve the built-in pools host (256 MiB) and fpga0" ] ||
        fail "--check-config --no-config says: $out"

rc=0
"$allocd" --config "$dir/missing.conf" --check-config 2>"$dir/err" || rc=$?
[ $rc -eq 78 ] && grep -q "$dir/missing.conf" "$dir/err" || fail "--config MISSING: exit $rc, $(cat "$dir/err")"
rc=0
"$allocd" --config "$dir/missing.conf" --no-config 2>"$dir/err" || rc=$?
[ $rc -eq 2 ] && grep -q 'choose one' "$dir/err" || fail "--config with --no-config: exit $rc, $(cat "$dir/err")"

# Without a file: the built-in pools, and a notice that says where the example is.
"$allocd" 2>"$dir/log" &
pids="$pids $!"
for _ in $(seq 200); do [ -S "$ALLOCD_SOCKET" ] && break; sleep 0.05; done
out=$("$allocctl" status) || fail "allocctl status: $out"
echo "$out" | grep -q fpga0 || fail "not the built-in pools: $out"
# Where the example is not installed (a build tree: ./dev.sh run), it names the files in the source tree.
if [ -e "$example" ]; then
        want="no $default; serving the built-in pools host (256 MiB) and fpga0; see allocd.conf(5) and $example"
else
        want="no $default; serving the built-in pools host (256 MiB) and fpga0; the example configuration and"
        want="$want allocd.conf(5) are not installed: in allocd's source tree they are allocd.conf"
fi
grep -qF "$want" "$dir/log" || fail "allocd did not say that it serves the built-in pools: $(cat "$dir/log")"
kill $pids
wait
pids=

[ "$(id -u)" -eq 0 ] && [ -n "${DEFAULTS_UNSHARED:-}" ] || {
        echo "defaults: the default file itself is checked only as root"
        exit 0
}
# Started without the file, which is written later: a reload reads it (the built-in pools, missing from it and
# empty, go at once, as any pool a reload takes out).
"$allocd" 2>"$dir/log" &
pids="$pids $!"
for _ in $(seq 200); do [ -S "$ALLOCD_SOCKET" ] && break; sleep 0.05; done
kill -HUP $pids
for _ in $(seq 200); do grep -q "SIGHUP: still no $default" "$dir/log" && break; sleep 0.05; done
grep -q "SIGHUP: still no $default: serving the built-in pools" "$dir/log" ||
        fail "a reload without the default file said: $(cat "$dir/log")"
mkdir -p "$confdir"
printf '[pool only]\nkind = host\nsize = 4M\n' >"$default"
kill -HUP $pids
for _ in $(seq 200); do "$allocctl" status | grep -q only && break; sleep 0.05; done
out=$("$allocctl" status) || fail "allocctl status: $out"
echo "$out" | grep -q only && ! echo "$out" | grep -q fpga0 ||
        fail "a reload did not read the default file written since the start: $out; $(cat "$dir/log")"
grep -q "2 pools removed (host, fpga0)" "$dir/log" ||
        fail "the reload did not say that the built-in pools went: $(cat "$dir/log")"
kill $pids
wait
pids=

out=$("$allocd" --check-config) || fail "--check-config with a default file failed: $out"
[ "$out" = "$default: valid, 1 pool" ] || fail "--check-config with a default file says: $out"
"$allocd" --log-level warning &
pids="$pids $!"
for _ in $(seq 200); do [ -S "$ALLOCD_SOCKET" ] && break; sleep 0.05; done
out=$("$allocctl" status) || fail "allocctl status: $out"
echo "$out" | grep -q only && ! echo "$out" | grep -q fpga0 || fail "allocd did not read $default: $out"
out=$("$allocd" --check-config --no-config) || fail "--check-config --no-config with a default file: $out"
echo "$out" | grep -q built-in || fail "--no-config read $default: $out"
printf '[pool only]\nkind = nonsense\n' >"$default"
rc=0
"$allocd" --check-config 2>"$dir/err" || rc=$?
[ $rc -eq 78 ] && grep -q "$default:2" "$dir/err" || fail "a broken default file: exit $rc, $(cat "$dir/err")"
echo "defaults: ok"
