#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/gpu-bundle.sh OUTDIR: the GPU suite in one folder that runs on a GPU host without our build
# dependencies (docs/HACKING.md, "The GPU suite on a GPU host"): builds with -Dcuda=enabled in
# build-bundle/ (or $GPU_BUNDLE_BUILD), then gathers into OUTDIR
#   bin/       allocd, allocctl, every test and benchmark of meson's suite gpu, and what they need
#              (kernels, helpers): each finds the others beside itself (tests/gpu/gpu-util.h, gpu_path)
#   lib/       liballoc-client and the Debian 12 libraries they need that are not glibc's,
#              taken from Debian's packages (apt-get download + dpkg -x)
#   python/    the Python module's source (built on the host by gpu-run.sh, for its python3) and tests
#   suite.tsv  what gpu-run.sh runs: kind, name, timeout, command line (from meson introspect)
#   gpu-run.sh the runner; BUNDLE-INFO says what was built from what
set -euo pipefail

[ $# -eq 1 ] || {
        echo "usage: scripts/gpu-bundle.sh OUTDIR" >&2
        exit 2
}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${GPU_BUNDLE_BUILD:-$src/build-bundle}
out=$1
# glibc's libraries are the host's (a GPU host has a newer glibc than Debian 12's); so is libcuda.
host_libs='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil|libcuda)\.so'

die() {
        echo "gpu-bundle: $*" >&2
        exit 1
}

[ -f "$build/build.ninja" ] || meson setup "$build" "$src" -Dcuda=enabled -Dpython=disabled -Dfuzz=false >/dev/null ||
        die "meson setup $build failed (the CUDA toolkit's headers and nvcc are needed: /usr/local/cuda)"
meson configure "$build" | grep -Eq '^ *cuda +enabled' || die "$build is not configured with -Dcuda=enabled"

# The suite gpu as meson lists it: "kind<TAB>name<TAB>timeout<TAB>cmd..." lines, and the build outputs they need.
suite=$(mktemp)
trap 'rm -f "$suite"' EXIT
outputs=$(python3 - "$build" "$suite" <<'EOF'
import json, os, subprocess, sys
build, suite = sys.argv[1:]
def introspect(what):
    return json.loads(subprocess.check_output(["meson", "introspect", "--" + what, build]))
files = {t["id"]: t["filename"] for t in introspect("targets")}
need = {"daemon/allocd", "client/allocctl", "client/liballoc-client.so.0.1.0"}
with open(suite, "w") as f:
    for kind, items in (("test", introspect("tests")), ("bench", introspect("benchmarks"))):
        for t in items:
            if not any(s.split(":")[-1] == "gpu" for s in t["suite"]):
                continue
            extra = set(t["env"]) - {"LD_LIBRARY_PATH"}
            paths = [a for a in t["cmd"] if a.startswith("/")]
            if extra or any(not p.startswith(build + "/") for p in paths):
                sys.exit("gpu-bundle: %s needs %s: the bundle carries only build outputs (bin/) and no environment"
                         % (t["name"], ", ".join(sorted(extra)) or " ".join(paths)))
            for dep in t["depends"]:
                need.update(os.path.relpath(p, build) for p in files[dep])
            need.update(os.path.relpath(p, build) for p in paths)
            cmd = [os.path.basename(a) if a.startswith("/") else a for a in t["cmd"]]
            f.write("\t".join([kind, t["name"], str(t["timeout"])] + cmd) + "\n")
print("\n".join(sorted(need)))
EOF
)
# shellcheck disable=SC2086 # one output path a word
ninja -C "$build" $outputs >/dev/null || die "the build failed: ninja -C $build"

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/python/include/alloc" "$out/python/tests"
for o in $outputs; do
        case $o in
        *.so.*) cp "$build/$o" "$out/lib/$(objdump -p "$build/$o" | awk '$1 == "SONAME" {print $2}')" ;;
        *) cp "$build/$o" "$out/bin/" ;;
        esac
done
cp "$suite" "$out/suite.tsv"
cp "$src/scripts/gpu-run.sh" "$out/"
cp "$src"/client/python/*.c "$src"/client/python/*.h "$out/python/"
cp "$src"/include/alloc/*.h "$out/python/include/alloc/"
cp "$src"/tests/python/*.py "$out/python/tests/"

# The libraries: each one ldd resolves outside the bundle and the host set, and theirs, from the Debian
# package that holds it (the same version as the one installed here, which the build linked).
debs=$build/bundle-debs
mkdir -p "$debs"
while :; do
        missing=$(for f in "$out"/bin/* "$out"/lib/*; do
                [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] || continue
                LD_LIBRARY_PATH=$out/lib ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
        done | grep -Ev "$host_libs" | grep -v " $out/lib/" | sort -u || true)
        [ -n "$missing" ] || break
        while read -r soname path; do
                # Debian 12 is usr-merged, but many packages still list their files under /lib.
                real=$(readlink -f "$path")
                for listed in "$real" "${real#/usr}" ""; do
                        pkg=$(dpkg -S "$listed" 2>/dev/null | sed -n '1s/: .*//p') && [ -n "$pkg" ] && break
                done
                [ -n "$listed" ] || die "no Debian package holds $real ($soname)"
                # The version installed here (the one linked against), else apt's candidate (the same
                # soname: a Debian 12 point release), else, offline, the installed file itself.
                ver=$(dpkg-query -W -f '${Version}' "$pkg")
                deb=$(ls "$debs/${pkg%%:*}_"*.deb 2>/dev/null | head -n 1 || true)
                [ -n "$deb" ] || (cd "$debs" && { apt-get download -q "$pkg=$ver" || apt-get download -q "$pkg"; } \
                        >/dev/null 2>&1) && deb=$(ls "$debs/${pkg%%:*}_"*.deb 2>/dev/null | head -n 1)
                if [ -n "$deb" ]; then
                        rm -rf "$debs/x" && dpkg -x "$deb" "$debs/x"
                        cp -L "$debs/x$listed" "$out/lib/$soname" || die "$deb has no $listed"
                        echo "$soname ${deb##*/}" >>"$out/lib/PACKAGES"
                else
                        echo "gpu-bundle: warning: apt-get download $pkg failed: $soname copied from $real" >&2
                        cp -L "$real" "$out/lib/$soname"
                        echo "$soname $pkg $ver (the installed file: apt-get download failed)" >>"$out/lib/PACKAGES"
                fi
        done <<<"$missing"
done
rm -rf "$debs/x"

{
        echo "built: $(date -u +%FT%TZ) on $(. /etc/os-release && echo "$PRETTY_NAME") by scripts/gpu-bundle.sh"
        echo "source: $(git -C "$src" describe --always --dirty 2>/dev/null || echo unknown)"
        echo "nvcc: $(/usr/local/cuda/bin/nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo none)"
        echo "glibc (the host's must be this or newer): $(ldd --version | head -n 1 | grep -o '[0-9.]*$')"
} >"$out/BUNDLE-INFO"

size=$(du -sk "$out" | cut -f1)
[ "$size" -lt $((60 * 1024)) ] || die "$out is $((size / 1024)) MiB: the device tool carries 64 MiB in all"
echo "gpu-bundle: $out: $(wc -l <"$out/suite.tsv") tests and benchmarks, $(grep -c . "$out/lib/PACKAGES") Debian\
 libraries, $((size / 1024)) MiB ($size KiB); run: bash $out/gpu-run.sh [RESULTS]" >&2
