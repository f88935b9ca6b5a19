#!/bin/sh
# Runs docs/examples against a real allocd: the consumer started before the
# producer (it must wait for the name), the fpga ranges, the kind's heap, and inspect.sh.
#   examples.sh ALLOCD ALLOCCTL PRODUCER CONSUMER FPGA_RANGES EXAMPLES_DIR KIND_HEAP
set -eu
allocd=$1 allocctl=$2 producer=$3 consumer=$4 fpga=$5 src=$6 kind=$7
name=examples
. "$(dirname "$0")/scratch.sh"

start_allocd "$allocd" --config "$src/example.conf"

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

out=$("$kind" host) || fail "kind-heap: $out"
echo "$out" | grep -qE "checksum 0; [1-9][0-9]* regions \([0-9]+ bytes\) held from pool host, [1-9][0-9]* requests" || fail "kind-heap: $out"
"$allocctl" --json status | grep -q '"used":0' || fail "memory still in use after kind-heap: $("$allocctl" status)"

# As the README runs it, with no arguments, when this is the build/ it looks in (./dev.sh test).
if [ "$(cd "$(dirname "$allocd")/.." && pwd)" = "$(cd "$src/../.." && pwd)/build" ]; then
        out=$(ALLOCD_SOCKET= "$src/inspect.sh") || fail "inspect.sh: $out"
else
        out=$(ALLOCD_SOCKET= "$src/inspect.sh" "$allocd" "$allocctl" "$producer") || fail "inspect.sh: $out"
fi
for want in '$ allocctl status' 'inspect-demo' 'largest free range: 0x' 'reserved'; do
        echo "$out" | grep -qF -- "$want" || fail "inspect.sh printed no '$want': $out"
done
echo "examples: all ran"
