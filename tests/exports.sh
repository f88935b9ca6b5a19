#!/usr/bin/env bash
# liballoc-client exports exactly the functions the public headers declare: no internal
# function (range_arena_check, wire_*, cuda_*, pool_*) and no variable, and none missing; and it
# needs no static TLS, so that dlopen can load it anywhere.
set -euo pipefail
lib=$1
shift
command -v nm >/dev/null || { echo "nm not installed" >&2; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# A declaration starts at column 0 (comments and continued lines do not); its name is the
# first word followed by '('.  Typedefs of callbacks are types, not symbols.
grep -hE '^[a-z]' "$@" | grep -v '^typedef' | grep -oE '^[^(]*\(' | grep -oE '[A-Za-z_][A-Za-z_0-9]*\($' |
        tr -d '(' | sort -u >"$dir/declared"
# The version node (type A) is not a symbol of the code.
nm -D --defined-only "$lib" | awk '$2 != "A" { sub(/@.*/, "", $3); print $2, $3 }' | sort -k2 >"$dir/nm"
awk '{ print $2 }' "$dir/nm" | sort -u >"$dir/exported"
rc=0
if ! diff -u --label declared --label exported "$dir/declared" "$dir/exported"; then
        echo "exports: $lib does not export exactly the functions of the public headers (diff above)" >&2
        rc=1
fi
if awk '$1 != "T" { bad = 1; print "exports: not a function:", $0 } END { exit !bad }' "$dir/nm" >&2; then
        rc=1
fi
# Frameworks load it with dlopen (PyTorch's CUDAPluggableAllocator): initial-exec TLS would make that
# fail in a process whose static TLS block is full ("cannot allocate memory in static TLS block").
if command -v readelf >/dev/null && readelf -d "$lib" | grep -q STATIC_TLS; then
        echo "exports: $lib uses initial-exec TLS (STATIC_TLS): dlopen may fail; use the default TLS model" >&2
        rc=1
fi
[ $rc -eq 0 ] && echo "exports: $(wc -l <"$dir/exported") functions, as the headers declare"
exit $rc
