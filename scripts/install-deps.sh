#!/usr/bin/env bash
# Installs the Debian 12 packages that allocd needs to build, test and benchmark.
# Does nothing when all of them are there.  Why each one is needed: README.md.
set -euo pipefail

pkgs=(
        meson ninja-build pkg-config gcc
        clang libclang-rt-14-dev   # the sanitizer pass and the fuzzers (ASan/UBSan runtimes, libFuzzer)
        libcriterion-dev           # tests
        libxml2-dev                # tests: allocctl map --svg must parse as XML
        strace                     # tests: system calls made to fail on purpose (skipped without it)
        scdoc                      # the man pages
        bash-completion            # where allocctl's completion is installed (its pkg-config file says)
        libjson-c-dev              # JSON output (benchmarks, allocctl)
        libuv1-dev                 # the daemon's event loop
        libprotobuf-c-dev protobuf-c-compiler  # the wire protocol
        libsystemd-dev             # sd_notify, socket activation, the journal
        libinih-dev                # the configuration file
        systemd                    # systemd-socket-activate and systemd-analyze, for the tests
        debootstrap systemd-container  # the real-systemd test (tests/nspawn.sh): a Debian root, booted
        python3-dev                # the Python module (client/python), for Debian's /usr/bin/python3
        python3-pytest python3-numpy python3-torch  # its tests: NumPy and PyTorch (CPU) through DLPack
)

missing=()
for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
        sudo=()
elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
else
        echo "install-deps: these packages are missing: ${missing[*]}" >&2
        echo "install-deps: run this script as root, or install them with apt-get" >&2
        exit 1
fi
"${sudo[@]}" apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
