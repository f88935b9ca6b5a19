#!/usr/bin/env bash
# falloc.h from host C++ (falloc(3)): the seed's templates compile and work, and a T that the
# unsigned short byte count of a context cannot hold is refused at compile time, not truncated
# (falloc<T> of 65544 bytes took 8 and the caller wrote 65544); and a heap in a static buffer builds
# with -O2 -Werror.
set -euo pipefail
cxx=$1
inc=$2
command -v "$cxx" >/dev/null || { echo "no C++ compiler" >&2; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/ok.cc" <<'CC'
#include <alloc/falloc.h>
#include <cstdlib>
struct Max { char b[65528]; };
int main() {
        uint64_t size = falloc_heap_size(1 << 17, 4);
        void *mem = aligned_alloc(256, (size + 255) / 256 * 256);
        fallocDeviceHeap *h;
        if (falloc_heap_format(mem, size, 1 << 17, &h))
                return 1;
        fallocCtx *ctx = fallocCreateCtx(h);
        void *m;
        unsigned short m2;
        fallocMark(ctx, m, m2);
        Max *big = falloc<Max>(ctx);
        fallocPush<uint64_t>(ctx, 42);
        if (!big || fallocPop<uint64_t>(ctx) != 42 || !fallocRetract(ctx, sizeof(Max)) || !fallocAtMark(ctx, m, m2))
                return 2;
        fallocDisposeCtx(ctx);
        return falloc_heap_available(h) == 4 ? 0 : 3;
}
CC
"$cxx" -std=c++17 -Wall -Wextra -Werror -I"$inc" -o "$dir/ok" "$dir/ok.cc"
"$dir/ok" || { echo "falloc-cxx: the templates do not work from C++ (exit $?)" >&2; exit 1; }
# A heap in a static buffer, built with -O2: GCC 12's -Warray-bounds took falloc_heap_format's memset
# for one of up to 2^54 bytes (the most chunks the geometry allows) and failed a -Werror build.
cat >"$dir/static.cc" <<'CC'
#include <alloc/falloc.h>
alignas(256) static char buf[8192];
int main() {
        fallocDeviceHeap *h;
        return falloc_heap_format(buf, sizeof buf, 64, &h) || !fallocGetChunk(h);
}
CC
"$cxx" -std=c++17 -O2 -Wall -Wextra -Werror -I"$inc" -o "$dir/static" "$dir/static.cc"
"$dir/static" || { echo "falloc-cxx: a heap in a static buffer does not work (exit $?)" >&2; exit 1; }
rc=0
for use in 'falloc<Big>(ctx)' 'fallocPush<Big>(ctx, Big())' 'fallocPop<Big>(ctx)'; do
        printf '#include <alloc/falloc.h>\nstruct Big { char b[65544]; };\nvoid f(fallocCtx *ctx) { %s; }\n' "$use" \
                >"$dir/big.cc"
        if "$cxx" -std=c++17 -fsyntax-only -I"$inc" "$dir/big.cc" 2>"$dir/err"; then
                echo "falloc-cxx: $use compiles: a 65544-byte T would take sizeof(T) mod 65536 bytes" >&2
                rc=1
        elif ! grep -q "at most 65535 bytes" "$dir/err"; then
                echo "falloc-cxx: $use is refused, but not for its size:" >&2
                cat "$dir/err" >&2
                rc=1
        fi
done
exit $rc
