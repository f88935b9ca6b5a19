#!/bin/sh
# Starts allocd with example.conf on a private socket, lets the producer hold
# memory, and shows what allocctl sees (fpga0 empty, host with its region).
#
#   inspect.sh [ALLOCD [ALLOCCTL [PRODUCER]]]
# By default the ones this checkout built in build/ (./dev.sh test), else the installed allocd
# and allocctl; the producer is never installed.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
built=$here/../../build
# program NAME BUILT: the program built in build/, else the one on $PATH or in sbin.
program() {
        if [ -x "$built/$2" ]; then
                echo "$built/$2"
        elif command -v "$1" >/dev/null 2>&1; then
                command -v "$1"
        elif [ -x "/usr/sbin/$1" ]; then
                echo "/usr/sbin/$1"
        elif [ -x "/usr/local/sbin/$1" ]; then
                echo "/usr/local/sbin/$1"
        else
                echo "inspect.sh: no $1: build this checkout (meson setup build && meson compile -C build)" >&2
                echo "inspect.sh: or give its path: inspect.sh [ALLOCD [ALLOCCTL [PRODUCER]]]" >&2
                exit 1
        fi
}
allocd=${1:-$(program allocd daemon/allocd)}
allocctl=${2:-$(program allocctl client/allocctl)}
producer=${3:-$(program producer docs/examples/producer)}
dir=$(mktemp -d)
export ALLOCD_SOCKET="$dir/allocd.sock"
pids=
producer_pid=
cleanup() {
        rc=$?
        # The producer first: an allocd stopped while it still holds a region warns that it is lost.
        if [ -n "$producer_pid" ]; then
                kill "$producer_pid" 2>/dev/null || true
                wait "$producer_pid" 2>/dev/null || true
        fi
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
producer_pid=$!
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
