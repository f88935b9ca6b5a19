#!/bin/sh
# meson install into a DESTDIR, then what a user of the package does: check the
# files are where they belong, build an example with nothing but
#   pkg-config --cflags --libs alloc-client
# from that DESTDIR (shared, then static), and run it against the installed allocd.
#   install.sh BUILD_DIR EXAMPLE_C CC SANITIZE
# CC and SANITIZE (meson's b_sanitize) are the build's: a library built with the
# sanitizers links only into programs built with them.
set -eu
build=$1 example=$2 cc=$3 sanitize=$4
cflags=
[ "$sanitize" = none ] || cflags="-fsanitize=$sanitize"
name=install
. "$(dirname "$0")/scratch.sh"
D=$dir/destdir

meson install -C "$build" --destdir "$D" --no-rebuild --quiet >"$dir/install.log" 2>&1 ||
        fail "meson install failed: $(cat "$dir/install.log")"
pc=$(find "$D" -name alloc-client.pc)
[ -n "$pc" ] || fail "no alloc-client.pc installed"
libdir=$(dirname "$(dirname "$pc")")
prefix=$(sed -n 's/^prefix=//p' "$pc")
root=$D$prefix
# Under the prefix, never the system's own /lib/systemd (a --prefix=/tmp/x install as root would
# overwrite it); systemd searches /usr/local/lib/systemd/system and /usr/lib/systemd/system.
unitdir=$D$(pkg-config --define-variable=root_prefix="$prefix" --variable=systemdsystemunitdir systemd)

for f in "$root/sbin/allocd" "$root/bin/allocctl" "$libdir/liballoc-client.a" "$root/include/alloc/client.h" \
        "$root/include/alloc/range.h" "$root/include/alloc/mem_alloc.h" "$unitdir/allocd.service" \
        "$unitdir/allocd.socket" "$root/share/man/man8/allocd.8" "$root/share/man/man5/allocd.conf.5" \
        "$root/share/man/man1/allocctl.1" "$root/share/man/man3/liballoc-client.3" "$root/share/doc/allocd/allocd.conf" \
        "$D$(pkg-config --define-variable=prefix="$prefix" --variable=sysusersdir systemd)/allocd.conf"; do
        [ -e "$f" ] || fail "not installed: ${f#$D}"
done
# Where bash-completion looks under the prefix (scripts/install-deps.sh installs it; without it, none).
if pkg-config --exists bash-completion; then
        compl=$D$(pkg-config --define-variable=datadir="$prefix/share" --variable=completionsdir bash-completion)
        [ -e "$compl/allocctl" ] || fail "not installed: ${compl#$D}/allocctl"
fi
[ -L "$libdir/liballoc-client.so" ] || fail "no liballoc-client.so link for -lalloc-client"
soname=$(objdump -p "$libdir/liballoc-client.so" | sed -n 's/^ *SONAME *//p')
[ "$soname" = liballoc-client.so.0 ] || fail "soname is '$soname', not liballoc-client.so.0"
[ -e "$libdir/$soname" ] || fail "no $soname"
grep -q "ExecStart=$prefix/sbin/allocd" "$unitdir/allocd.service" || fail "allocd.service does not start $prefix/sbin/allocd"
# Outside /usr, ld.so finds the library only through the rpath (no ldconfig, no LD_LIBRARY_PATH).
if [ "$prefix" != /usr ]; then
        for f in "$root/bin/allocctl" $(find "$D" -name 'allocd*.so'); do
                objdump -p "$f" | grep -q "R.*PATH *${libdir#$D}\$" || fail "${f#$D} has no rpath to ${libdir#$D}"
        done
fi
man -l "$root/share/man/man1/allocctl.1" >/dev/null 2>&1 || [ ! -x /usr/bin/man ] || fail "allocctl.1 does not render"

export PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D"
flags=$(pkg-config --cflags --libs alloc-client) || fail "pkg-config --cflags --libs alloc-client failed"
$cc $cflags -o "$D/example" "$example" $flags || fail "the example does not build with: $flags"
# README.md, "Use it from C": --static links the static library, and nothing else changes.
static=$(pkg-config --static --cflags --libs alloc-client)
$cc $cflags -o "$D/example-static" "$example" $static || fail "the example does not link statically with: $static"
! objdump -p "$D/example-static" | grep -q 'NEEDED.*liballoc-client' ||
        fail "pkg-config --static linked the shared library: $static"
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

# The installed example starts as it is on a fresh machine (no group of its own making needed).
"$root/sbin/allocd" --check-config --config "$root/share/doc/allocd/allocd.conf" >"$D/out" 2>&1 ||
        fail "the installed example config is not valid here: $(cat "$D/out")"
start_allocd "$root/sbin/allocd" --config "$root/share/doc/allocd/allocd.conf"
LD_LIBRARY_PATH=$libdir "$D/example" >"$D/out" 2>&1 || fail "the installed example failed: $(cat "$D/out")"
"$D/example-static" >"$D/out" 2>&1 || fail "the static example failed: $(cat "$D/out")"
"$root/bin/allocctl" status >/dev/null 2>&1 || LD_LIBRARY_PATH=$libdir "$root/bin/allocctl" status >/dev/null ||
        fail "the installed allocctl cannot reach the installed allocd"
echo "install: ok ($prefix, units in ${unitdir#$D})"
