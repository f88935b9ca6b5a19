#!/bin/sh
# SPDX-License-Identifier: MIT
# Every benchmark refuses a bad --seconds and a bad --cpu (and its other numeric options) before it
# starts anything: exit 2, a message that names the option, and the usage line. gpu-bench checks its
# options before it looks for a GPU, so it is checked here too. Usage: test-args.sh BUILD/bench
set -u
dir=$1
fail=0
check() { # BENCH OPTION VALUE
        # timeout: on code that takes the value, a benchmark would run (and this check fail) in full.
        out=$(timeout 10 "$dir/$1" "$2" "$3" 2>&1 </dev/null)
        rc=$?
        if [ "$rc" -ne 2 ] || ! printf '%s' "$out" | grep -q -- "$2" || ! printf '%s' "$out" | grep -qi '^usage: '; then
                echo "FAIL: $1 $2 '$3': exit $rc, said: $out"
                fail=1
        fi
}
# A CPU this process may not run on: one past the last allowed (taskset's mask's highest bit).
bad_cpu=$(($(nproc --all) + 1))
for b in allocd-bench region-bench state-bench restart-bench isolation-bench kind-bench range-bench falloc-bench \
        waiter-bench kill-storm soak; do
        for s in abc 0 -1 1x nan; do
                check "$b" --seconds "$s"
        done
done
for b in allocd-bench isolation-bench kind-bench range-bench; do
        for c in x -1 1x "$bad_cpu" 99999; do
                check "$b" --cpu "$c"
        done
done
for r in abc 0 65 -1 1x; do
        check gpu-bench --rounds "$r"
done
for m in abc 999 1000001 -1 1x; do
        check scale-bench --max "$m"
done
exit $fail
