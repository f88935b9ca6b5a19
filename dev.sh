#!/usr/bin/env bash
# The project's entry points.  The README's quick start is `./dev.sh run` and `./dev.sh test`.
#
#   ./dev.sh run [ARGS]           install what is missing, build, run allocd in the foreground
#   ./dev.sh test                 install what is missing, build, run the whole test suite
#   ./dev.sh sanitize             the test suite again, built by clang with ASan and UBSan
#   ./dev.sh bench NAME [ARGS]    build and run bench/NAME-bench: range, allocd, scale, region, isolation, falloc, kind,
#                                 gpu, state, restart, waiter, or python (bench/python-bench.py, with Debian's python3)
#   ./dev.sh fuzz [TARGET] [SECS] the fuzzers (request, config, range, state, reply; all by default), SECS (60) each
set -euo pipefail
cd "$(dirname "$0")"

usage() {
        sed -n '2,11s/^# \{0,1\}//p' "$0" >&2
        exit 2
}

# build DIR [meson options...]: configures DIR once, then builds it.
build() {
        local dir=$1
        shift
        [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
        meson compile -C "$dir" >/dev/null
}

# run_tests DIR: the suite in DIR, then one closing line with the counts.
run_tests() {
        local dir=$1 rc=0
        meson test -C "$dir" --print-errorlogs "${@:2}" || rc=$?
        scripts/test-summary.py "$dir/meson-logs/testlog.json" || rc=1
        return $rc
}

# fuzz_one NAME SECONDS: fuzz/fuzz-NAME over a copy of its corpus (the committed one never grows);
# a crash, a leak or a sanitizer report fails it, and leaves the input in build-fuzz/run/NAME/.
fuzz_one() {
        local name=$1 secs=$2 work=build-fuzz/run/$1 max_len=4096 rc=0
        [ -x "build-fuzz/fuzz/fuzz-$name" ] || {
                echo "dev.sh: no fuzzer '$name'; they are request, config, range, state and reply" >&2
                return 2
        }
        [ "$name" = request ] && max_len=65536 # one input is several packets of up to 64 KiB
        rm -rf "$work"
        mkdir -p "$work/corpus" "$work/crashes"
        cp "fuzz/corpus/$name"/* "$work/corpus/"
        # UBSan reports and goes on unless told to stop: libFuzzer would not see its findings.
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
                "build-fuzz/fuzz/fuzz-$name" -max_total_time="$secs" -max_len=$max_len -timeout=10 \
                -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$work/crashes/" "$work/corpus" \
                >"$work/log" 2>&1 || rc=$?
        # The last status line (execs, cov, ft, corpus) and the run's totals.
        grep -E '^#[0-9]+' "$work/log" | tail -n 1 >&2 || true
        grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' "$work/log" >&2 || true
        if [ $rc -ne 0 ]; then
                tail -n 60 "$work/log" >&2
                echo "fuzz: $name FAILED (exit $rc); the input: $(ls "$work/crashes"/* 2>/dev/null | tr '\n' ' ')" >&2
        else
                echo "fuzz: $name: ${secs} s, no crash (log: $work/log)" >&2
        fi
        return $rc
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
        scripts/install-deps.sh
        build build
        # Without --config allocd serves its built-in pools: 'host' (256 MiB) and 'fpga0'.
        echo "dev.sh: allocd in the foreground; 'build/client/allocctl status' in another shell; Ctrl-C stops it" >&2
        echo "dev.sh: the example configuration: ./dev.sh run --config allocd.conf; its keys: man/allocd.conf.5.scd" >&2
        exec build/daemon/allocd "$@"
        ;;
test)
        scripts/install-deps.sh
        build build
        run_tests build
        ;;
sanitize)
        scripts/install-deps.sh
        # Not the Python module: Python itself is not built with ASan, so its runtime would not come first.
        CC=clang build build-sanitize -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false -Dpython=disabled
        log=build-sanitize/meson-logs/testlog.txt
        rc=0
        # protect_shadow_gap=0: cuInit maps memory where ASan's shadow gap is, and fails without it
        # (docs/HACKING.md, "Sanitizers"); the suppressions are the driver's own false leaks.
        ASAN_OPTIONS=detect_leaks=1:protect_shadow_gap=0 LSAN_OPTIONS=suppressions=$PWD/scripts/lsan-cuda.supp \
                UBSAN_OPTIONS=print_stacktrace=1 run_tests build-sanitize || rc=$?
        # Criterion passes a test that leaks: the sanitizers' reports are failures all the same.
        if grep -E 'LeakSanitizer|AddressSanitizer|runtime error' "$log" >&2; then
                echo "sanitize: the sanitizers reported errors (above; full log: $log)" >&2
                rc=1
        fi
        exit $rc
        ;;
fuzz)
        targets=(request config range state reply)
        if [ $# -gt 0 ] && ! [[ $1 =~ ^[0-9]+$ ]]; then
                targets=("$1")
                shift
        fi
        secs=${1:-60}
        scripts/install-deps.sh
        CC=clang build build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false -Dtests=false \
                -Dbench=false -Dpython=disabled
        rc=0
        for t in "${targets[@]}"; do
                fuzz_one "$t" "$secs" || rc=1
        done
        exit $rc
        ;;
bench)
        [ $# -gt 0 ] && [ -f "bench/$1-bench.c" ] || [ "${1:-}" = python ] || usage
        name=$1
        shift
        scripts/install-deps.sh
        build build
        if [ "$name" = python ]; then
                # The interpreter the module was built for (-Dpython_interpreter), not whichever is first on PATH.
                PYTHONPATH=build/client/python ALLOCD_PATH=build/daemon/allocd exec /usr/bin/python3 \
                        bench/python-bench.py "$@"
        fi
        exec "build/bench/$name-bench" "$@"
        ;;
*)
        usage
        ;;
esac
