# Sourced by the shell tests after they set $name: a scratch directory $dir
# that is also allocd's socket directory, background processes ($pids) that
# are killed however the test ends, fail MESSAGE, and start_allocd.
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
fail() { echo "$name: $*" >&2; exit 1; }

# start_allocd ALLOCD [ARGS]: allocd on $ALLOCD_SOCKET, waited for until it listens.
start_allocd() {
        "$@" --log-level warning &
        pids="$pids $!"
        for _ in $(seq 200); do [ -S "$ALLOCD_SOCKET" ] && return 0; sleep 0.05; done
        fail "allocd did not start"
}
