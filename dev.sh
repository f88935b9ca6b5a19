#!/usr/bin/env bash
# The project's entry points.  The README's quick start is `./dev.sh run` and `./dev.sh test`.
#
#   ./dev.sh run [ARGS]         install what is missing, build, run allocd in the foreground
#   ./dev.sh test               install what is missing, build, run the whole test suite
#   ./dev.sh sanitize           the test suite again, built by clang with ASan and UBSan
#   ./dev.sh bench NAME [ARGS]  build and run bench/NAME-bench: range, allocd, scale or gpu (GPU only)
set -euo pipefail
cd "$(dirname "$0")"

usage() {
        sed -n '2,9s/^# \{0,1\}//p' "$0" >&2
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

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
run)
        scripts/install-deps.sh
        build build
        # Without --config allocd serves its built-in pools: 'host' (256 MiB) and 'fpga0'.
        echo "dev.sh: allocd in the foreground; 'build/client/allocctl status' in another shell; Ctrl-C stops it" >&2
        exec build/daemon/allocd "$@"
        ;;
test)
        scripts/install-deps.sh
        build build
        run_tests build
        ;;
sanitize)
        scripts/install-deps.sh
        CC=clang build build-sanitize -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false
        log=build-sanitize/meson-logs/testlog.txt
        rc=0
        ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_tests build-sanitize || rc=$?
        # Criterion passes a test that leaks: the sanitizers' reports are failures all the same.
        if grep -E 'LeakSanitizer|AddressSanitizer|runtime error' "$log" >&2; then
                echo "sanitize: the sanitizers reported errors (above; full log: $log)" >&2
                rc=1
        fi
        exit $rc
        ;;
bench)
        [ $# -gt 0 ] && [ -f "bench/$1-bench.c" ] || usage
        name=$1
        shift
        scripts/install-deps.sh
        build build
        exec "build/bench/$name-bench" "$@"
        ;;
*)
        usage
        ;;
esac
