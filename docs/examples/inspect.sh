#!/bin/sh
# Starts allocd with example.conf on a private socket, lets the producer and a
# few fpga ranges hold memory, and shows what allocctl sees.
#
#   inspect.sh [ALLOCD [ALLOCCTL [PRODUCER]]]     (default: the ones on $PATH)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
allocd=${1:-allocd}
allocctl=${2:-allocctl}
producer=${3:-producer}
dir=$(mktemp -d)
export ALLOCD_SOCKET="$dir/allocd.sock"
pids=
cleanup() {
        rc=$?
        kill $pids 2>/dev/null || true
        wait 2>/dev/null || true
        rm -rf "$dir"
        exit $rc
}
trap cleanup EXIT

"$allocd" --config "$here/example.conf" --log-level warning &
pids=$!
for _ in $(seq 100); do [ -S "$ALLOCD_SOCKET" ] && break; sleep 0.05; done
"$producer" inspect-demo >/dev/null &
pids="$pids $!"
for _ in $(seq 100); do "$allocctl" dump host | grep -q inspect-demo && break; sleep 0.05; done

echo '$ allocctl status'
"$allocctl" status
echo
echo '$ allocctl dump'
"$allocctl" dump
echo
echo '$ allocctl map fpga0 --width 72 --rows 4'
"$allocctl" map fpga0 --width 72 --rows 4
echo
echo '$ allocctl map host --width 72 --rows 2'
"$allocctl" map host --width 72 --rows 2
