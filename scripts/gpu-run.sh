#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gpu-run.sh [RESULTS]: runs the GPU suite from the bundle this script is in (scripts/gpu-bundle.sh
# makes it; docs/HACKING.md, "The GPU suite on a GPU host"), from any folder: every test and benchmark
# of suite.tsv with the bundle's libraries, then the Python module's tests, built here for this
# host's python3.  Writes into RESULTS (default $OUT, else ./gpu-results), three files:
#   summary.txt    the table printed last: name, pass/fail/skip, seconds, key figure
#   results.json   the same, and each benchmark's JSON, and the host (GPU, driver, CUDA, python)
#   logs.tar.gz    every log in full (rewritten after each item, so a run cut short keeps what it did)
# GPU_RUN_TIMEOUT=S caps each item's timeout (suite.tsv has meson's); GPU_RUN_BUDGET=S the whole run's
# (each item gets what is left, and one with under 20 s left is a row "skip (no time)", so that a run
# under a time limit ends by itself with its three files whole); GPU_RUN_ONLY=REGEX runs the names
# that match; GPU_RUN_PYTHON=PYTHON is the interpreter the module is built for (python3).
# Exits 1 if anything failed, else 0.
set -uo pipefail

bundle=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
[ -f "$bundle/suite.tsv" ] || {
        echo "gpu-run: $bundle has no suite.tsv: run the gpu-run.sh of a bundle (scripts/gpu-bundle.sh OUTDIR)" >&2
        exit 2
}
results=${1:-${OUT:-$PWD/gpu-results}}
mkdir -p "$results" && results=$(cd "$results" && pwd) || exit 2
work=$(mktemp -d /tmp/gpu-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/logs"
deadline=$((SECONDS + ${GPU_RUN_BUDGET:-1000000000}))
rows=$work/rows.tsv
: >"$rows"
libs=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# For the programs that take allocd from the tests' harness (tests/harness.c, daemon_path) or allocctl too.
export ALLOCD_PATH=$bundle/bin/allocd ALLOCCTL_PATH=$bundle/bin/allocctl

# The host, first: what the results were measured on.
{
        echo "date: $(date -u +%FT%TZ)"
        echo "uname: $(uname -srm)"
        echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
                echo "none (nvidia-smi did not answer)")"
        echo "cuda (nvcc): $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo none)"
        echo "python: $("${GPU_RUN_PYTHON:-python3}" --version 2>/dev/null || echo none)"
        sed 's/^/bundle /' "$bundle/BUNDLE-INFO"
} >"$work/logs/host.txt" 2>&1

# The table, without column(1): a bare host may lack it.
table() {
        awk -F'\t' '{ printf "%-16s %-16s %8s  %s\n", $1, $2, $3, $4 }' <(printf 'name\tresult\tseconds\tkey figure\n') "$rows"
}

# results.json: the rows, each benchmark's JSON and the host (needs python3; written again after each row).
write_json() {
        command -v python3 >/dev/null || return 0
        python3 - "$work" "$rows" >"$results/results.json.new" <<'EOF' && mv "$results/results.json.new" "$results/results.json"
import json, os, sys
work, rows = sys.argv[1:]
out = {"host": open(os.path.join(work, "logs/host.txt")).read().splitlines(), "results": []}
for line in open(rows):
    name, result, secs, fig = line.rstrip("\n").split("\t")
    row = {"name": name, "result": result, "seconds": secs, "figure": fig}
    try:
        row["json"] = json.load(open(os.path.join(work, "logs", name + ".json")))
    except (OSError, ValueError):
        pass
    out["results"].append(row)
json.dump(out, sys.stdout, indent=1)
EOF
}

# finish NAME STATUS SECONDS FIGURE: one row of the table; the table and the logs written again, so
# that a run stopped at its limit leaves what it did.
finish() {
        printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:0:70}" >>"$rows"
        table >"$results/summary.txt"
        tar czf "$results/logs.tar.gz.new" -C "$work" logs && mv "$results/logs.tar.gz.new" "$results/logs.tar.gz"
        write_json
}

# time_left NAME LIMIT: the timeout NAME gets within GPU_RUN_BUDGET, or nothing (its row says so).
time_left() {
        local left=$((deadline - SECONDS - 5))
        if [ $left -lt 20 ]; then
                finish "$1" "skip (no time)" 0 "GPU_RUN_BUDGET spent before it"
                return 1
        fi
        echo $(($2 < left ? $2 : left))
}

# status RC: pass, skip (77) or fail.
status() {
        case $1 in
        0) echo pass ;;
        77) echo skip ;;
        124 | 137) echo "fail (timeout)" ;;
        *) echo "fail (exit $1)" ;;
        esac
}

# figure NAME LOG JSON: the key figure: a benchmark's headline from its JSON, else the last line it wrote.
figure() {
        if [ -s "$3" ] && command -v python3 >/dev/null; then
                python3 - "$1" "$3" <<'EOF' 2>/dev/null && return
import json, sys
name, path = sys.argv[1:]
j = json.load(open(path))
if name == "gpu-bench":
    at = {r["pool"]: r["driver_over_next"] for r in j["results"] if r["size"] == 64 << 20}
    print("64 MiB: driver/allocd " + ", ".join("%s %.0fx" % kv for kv in sorted(at.items())) + " (target >= 100x)")
elif name == "falloc-bench":
    g = j["gpu_pairs_per_second"]
    print("GPU part skipped: " + g["skipped"] if "skipped" in g else
          "GPU %.3g pairs/s, %.1fx device malloc" % (g["falloc"], g["vs_device_malloc"]))
else:
    sys.exit(1)
EOF
        fi
        local skipped
        skipped=$(grep -o '"skipped":"[^"]*"' "$3" 2>/dev/null | sed 's/"skipped":"\(.*\)"/GPU part skipped: \1/')
        [ -n "$skipped" ] && echo "$skipped" && return
        [ "$(head -c 1 "$3" 2>/dev/null)" = "{" ] && echo "(no python3 here to read its JSON: logs.tar.gz)" && return
        cat "$2" "$3" 2>/dev/null | grep -v '^[[:space:]]*$' | tail -n 1
}

run_item() { # KIND NAME TIMEOUT CMD...
        local kind=$1 name=$2 limit=$3 log=$work/logs/$2.log json=$work/logs/$2.json rc start secs
        shift 3
        [[ -z ${GPU_RUN_ONLY:-} || $name =~ $GPU_RUN_ONLY ]] || return 0
        [ -n "${GPU_RUN_TIMEOUT:-}" ] && [ "$GPU_RUN_TIMEOUT" -lt "$limit" ] && limit=$GPU_RUN_TIMEOUT
        limit=$(time_left "$name" "$limit") || return 0
        echo "gpu-run: $kind $name (timeout ${limit} s)" >&2
        start=$EPOCHREALTIME
        # A test's output is its log; a benchmark's stdout is its JSON (meson runs it with --json).
        if [ "$kind" = bench ]; then
                (cd "$work" && LD_LIBRARY_PATH=$libs timeout -k 10 "$limit" "$bundle/bin/$1" "${@:2}" >"$json" 2>"$log")
        else
                (cd "$work" && LD_LIBRARY_PATH=$libs timeout -k 10 "$limit" "$bundle/bin/$1" "${@:2}" >"$log" 2>&1)
        fi
        rc=$?
        secs=$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $start }")
        local st fig
        st=$(status $rc)
        fig=$(figure "$name" "$log" "$json")
        # falloc-bench measures the CPU too and exits 0 where there is no GPU for its GPU part (1 on a broken one).
        [[ $st = pass && $fig = "GPU part skipped"* ]] && st=skip
        finish "$name" "$st" "$secs" "$fig"
}

# Every binary's libraries resolve inside the bundle or on the host: else the rows below say little.
missing=$(for f in "$bundle"/bin/* "$bundle"/lib/*.so*; do
        [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] || continue
        LD_LIBRARY_PATH=$libs ldd "$f" 2>&1 | awk -v f="${f##*/}" '/not found/ {print f ": " $1}'
done | sort -u)
echo "${missing:-every library found}" >"$work/logs/libraries.log"
if [ -n "$missing" ]; then
        finish libraries "fail" 0 "not found: $(echo "$missing" | tr '\n' ' ')"
else
        finish libraries pass 0 "every library found"
fi

# allocd and allocctl from the bundle on this host, GPU or not: the built-in pools, one status.
smoke() {
        local log=$work/logs/allocd.log sock=$work/allocd.sock pid rc=1
        LD_LIBRARY_PATH=$libs "$bundle/bin/allocd" --no-config --socket "$sock" --log-level warning >"$log" 2>&1 &
        pid=$!
        for _ in $(seq 200); do
                [ -S "$sock" ] && break
                sleep 0.05
        done
        LD_LIBRARY_PATH=$libs timeout 10 "$bundle/bin/allocctl" --socket "$sock" status >>"$log" 2>&1 && rc=0
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        if [ $rc -eq 0 ]; then
                finish allocd pass 0 "allocctl status answered: $(grep -cE '^[a-z0-9]+ +(host|pinned|gpu|fpga) ' "$log") pools"
        else
                finish allocd fail 0 "$(tail -n 1 "$log")"
        fi
}
[[ -z ${GPU_RUN_ONLY:-} || allocd =~ $GPU_RUN_ONLY ]] && smoke

while IFS=$'\t' read -r -a item; do
        run_item "${item[@]}"
done <"$bundle/suite.tsv"

# The Python module, built for this host's python3 (the bundle's was built for none: Debian 12 has
# Python 3.11, GPU hosts often 3.12), then its tests (pytest, torch and cupy where installed).
python_tests() {
        local log=$work/logs/python.log py=${GPU_RUN_PYTHON:-python3} inc cc=${CC:-cc} start rc limit
        [[ -z ${GPU_RUN_ONLY:-} || python =~ $GPU_RUN_ONLY ]] || return 0
        limit=$(time_left python "${GPU_RUN_TIMEOUT:-300}") || return 0
        echo "gpu-run: python" >&2
        start=$(date +%s)
        command -v "$py" >/dev/null || {
                echo "no python3 here" >"$log"
                finish python skip 0 "no python3 here"
                return
        }
        inc=$($py -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
        command -v "$cc" >/dev/null || cc=gcc
        if [ ! -f "$inc/Python.h" ] || ! command -v "$cc" >/dev/null; then
                echo "cannot build the module: no $inc/Python.h, or no C compiler ($cc)" >"$log"
                finish python skip 0 "$(cat "$log")"
                return
        fi
        mkdir -p "$work/python"
        # DT_RPATH (not RUNPATH): it serves liballoc-client's own needs too, and python3 itself keeps the
        # host's libraries (no LD_LIBRARY_PATH in it); allocd and allocctl get theirs through wrappers.
        if ! "$cc" -std=gnu17 -D_GNU_SOURCE -O2 -shared -fPIC -I"$inc" -I"$bundle/python/include" -I"$bundle/python" \
                -o "$work/python/allocd$($py -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')" \
                "$bundle"/python/*.c -L"$bundle/lib" -l:liballoc-client.so.0 \
                -Wl,--disable-new-dtags,-rpath,"$bundle/lib" >"$log" 2>&1; then
                finish python "fail (build)" $(($(date +%s) - start)) "$(grep -m1 error "$log")"
                return
        fi
        for p in allocd allocctl; do
                printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libs" "$bundle/bin/$p" >"$work/python/$p"
                chmod +x "$work/python/$p"
        done
        (cd "$work" && PYTHONPATH=$work/python:$bundle/python/tests ALLOCD_PATH=$work/python/allocd \
                ALLOCCTL_PATH=$work/python/allocctl PYTHONUNBUFFERED=1 timeout -k 10 "$limit" \
                "$py" "$bundle/python/tests/run.py" >>"$log" 2>&1)
        rc=$?
        finish python "$(status $rc)" $(($(date +%s) - start)) "$({ tail -n 1 "$log"
                grep -E '[0-9]+ (passed|failed|skipped)' "$log"; } | tail -n 1 | tr -d '=')"
}
python_tests

echo
grep -E '^(gpu|cuda|python):' "$work/logs/host.txt"
echo "logs: $results/logs.tar.gz; table: $results/summary.txt"
table
! cut -f2 "$rows" | grep -q '^fail'
