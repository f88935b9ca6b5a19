#!/bin/bash
# SPDX-License-Identifier: MIT
# The benchmarks leave nothing behind, whether they finish or fail half-way: no allocd (or echo
# server) running, no directory in /tmp; and a benchmark whose helper process dies fails instead
# of waiting forever.  usage: test-cleanup.sh BUILD/bench
set -u
b=$1
fails=0

# What a benchmark leaves under its /tmp prefix: the processes on a socket there, of this session only
# (meson gives each test its own; another run's allocd is not this one's to kill), and the directories.
leftovers() {
        {
                pgrep -s 0 -f -- "--socket /tmp/$1"
                ls -d /tmp/"$1"* 2>/dev/null
        } | sort
}

# left_behind NAME PREFIX BEFORE: fails if leftovers PREFIX has more than BEFORE, and removes it.
left_behind() {
        local new
        new=$(comm -13 <(echo "$3") <(leftovers "$2"))
        [ -z "$new" ] && return
        echo "FAIL $1: left behind:"
        echo "$new"
        for x in $new; do
                case $x in
                /tmp/*) rm -rf "$x" ;;
                *) kill "$x" ;;
                esac
        done
        fails=$((fails + 1))
}

# check NAME PREFIX WANT-RC COMMAND...: runs it; fails if its exit status is not WANT-RC ("nonzero":
# any but 0) or if something new is left under /tmp/PREFIX.
check() {
        local name=$1 prefix=$2 want=$3 before rc
        shift 3
        before=$(leftovers "$prefix")
        "$@" >/dev/null 2>"/tmp/test-cleanup-$$.err"
        rc=$?
        sleep 0.5 # allocd acts on the SIGTERM of its parent's death
        if [ "$want" = nonzero ] && [ "$rc" = 0 ] || [ "$want" != nonzero ] && [ "$rc" != "$want" ]; then
                echo "FAIL $name: exit status $rc, wanted $want"
                cat "/tmp/test-cleanup-$$.err"
                fails=$((fails + 1))
        fi
        left_behind "$name" "$prefix" "$before"
        rm -f "/tmp/test-cleanup-$$.err"
}

# A run that finishes.
check "scale-bench --max 1000" scale-bench. 0 "$b/scale-bench" --max 1000
check "waiter-bench --seconds 0.2 --holes 1000" waiter-bench- 0 "$b/waiter-bench" --seconds 0.2 --holes 1000
# Runs that fail once their allocd is up: the library refuses to connect (a bad ALLOCD_SPARE).
check "isolation-bench, no connection" isolation-bench- nonzero env ALLOCD_SPARE=bad timeout 60 "$b/isolation-bench"
check "kind-bench, no connection" kind-bench- nonzero env ALLOCD_SPARE=bad timeout 60 "$b/kind-bench"
check "allocd-bench, no connection" allocd-bench- nonzero env ALLOCD_SPARE=bad timeout 60 "$b/allocd-bench"

# region-bench's hand-off with its consumer killed: an error, not a wait without end.
before=$(leftovers region-bench-)
"$b/region-bench" --only handoff --seconds 0.05 >/dev/null 2>&1 &
pid=$!
kid=
for _ in $(seq 3000); do
        # Seen twice, 50 ms apart: the consumer, not an allocd between its fork and its exec.
        kid=$(pgrep -P "$pid" -x region-bench) && sleep 0.05 && [ "$(pgrep -P "$pid" -x region-bench)" = "$kid" ] &&
                break
        kid=
        sleep 0.01
done
if [ -z "$kid" ]; then
        echo "FAIL region-bench: its consumer was not seen"
        fails=$((fails + 1))
else
        kill -9 "$kid"
        for _ in $(seq 300); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
                echo "FAIL region-bench: still waiting 30 s after its consumer died"
                kill -9 "$pid"
                fails=$((fails + 1))
        fi
        wait "$pid"
        rc=$?
        if [ "$rc" = 0 ]; then
                echo "FAIL region-bench: exit status 0 after its consumer died"
                fails=$((fails + 1))
        fi
fi
sleep 0.5
left_behind region-bench region-bench- "$before"

[ "$fails" = 0 ] && echo "all clean"
exit $((fails > 0))
