#!/bin/sh
# Runs docs/examples against a real allocd: the consumer started before the
# producer (it must wait for the name), the fpga ranges, and inspect.sh.
#   examples.sh ALLOCD ALLOCCTL PRODUCER CONSUMER FPGA_RANGES EXAMPLES_DIR
set -eu
allocd=$1 allocctl=$2 producer=$3 consumer=$4 fpga=$5 src=$6
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
fail() { echo "examples: $*" >&2; exit 1; }

"$allocd" --config "$src/example.conf" --log-level warning &
pids=$!
for _ in $(seq 200); do [ -S "$ALLOCD_SOCKET" ] && break; sleep 0.05; done
[ -S "$ALLOCD_SOCKET" ] || fail "allocd did not start"

"$consumer" demo-frame >"$dir/consumer.out" 2>&1 &
cpid=$!
pids="$pids $cpid"
sleep 0.3 # the consumer is now polling for a name nobody has published
"$producer" demo-frame >"$dir/producer.out" 2>&1 || fail "producer failed: $(cat "$dir/producer.out")"
wait $cpid || fail "consumer failed: $(cat "$dir/consumer.out")"
grep -q "consumer: read 'hello from the producer, region " "$dir/consumer.out" || fail "consumer: $(cat "$dir/consumer.out")"
grep -q "the consumer answered: thanks, from the consumer" "$dir/producer.out" || fail "producer: $(cat "$dir/producer.out")"
# Both have gone: the region is back.
"$allocctl" --json status | grep -q '"used":0' || fail "memory still in use after both exited: $("$allocctl" status)"

out=$("$fpga" fpga0) || fail "fpga-ranges: $out"
[ "$(echo "$out" | grep -c ' ok$')" -eq 5 ] || fail "fpga-ranges: $out"

out=$(ALLOCD_SOCKET= "$src/inspect.sh" "$allocd" "$allocctl" "$producer") || fail "inspect.sh: $out"
for want in '$ allocctl status' 'inspect-demo' 'largest free range: 0x' 'reserved'; do
        echo "$out" | grep -qF -- "$want" || fail "inspect.sh printed no '$want': $out"
done
echo "examples: all ran"
