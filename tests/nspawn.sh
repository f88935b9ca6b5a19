#!/usr/bin/env bash
# The README's "Run it as a service", literally, under a real systemd: a Debian 12 root booted
# with systemd-nspawn (docs/HACKING.md, "The real-systemd test"; DESIGN.md §8 has the recipe).
#
#   nspawn.sh SOURCE_DIR BUILD_DIR HELPER_CLIENT
#
# It builds SOURCE_DIR with --prefix=/usr in BUILD_DIR/nspawn/build-system (as the README does),
# installs that into a copy of a cached root (ALLOCD_TEST_CACHE, default /var/cache/allocd-test),
# boots it, and runs the README's commands inside; then restarts allocd (systemctl restart, a
# SIGKILL, stop + start) while clients hold regions (issue 18).  HELPER_CLIENT
# (tests/helper-client.c) allocates from a pool as another user, and holds named regions.  Exits 77 with one line where the machine cannot do this
# (not root, no debootstrap or systemd-nspawn, no network for the first root, no booting).
set -euo pipefail
src=$1 build=$2 helper=$3
cache=${ALLOCD_TEST_CACHE:-/var/cache/allocd-test}
# What the root needs besides minbase: systemd as PID 1, and allocd's runtime libraries (README.md,
# "Dependencies").  Changing this list builds a new cached root.
pkgs=systemd,systemd-sysv,dbus,libuv1,libprotobuf-c1,libinih1,libjson-c5
machine=allocd-test-$$
scratch= nspawn_pid= pid1=

say() { echo "nspawn: $*"; }
skip() {
        echo "nspawn: SKIP: $*"
        exit 77
}
fail() {
        echo "nspawn: FAIL: $*" >&2
        if [ -n "$pid1" ]; then
                echo "--- journalctl -u allocd -u allocd.socket (last 40 lines)" >&2
                ct journalctl --no-pager -u allocd -u allocd.socket -n 40 >&2 || true
        fi
        exit 1
}

cleanup() {
        local rc=$?
        if [ -n "$pid1" ]; then
                timeout 10 nsenter -t "$pid1" -a systemctl poweroff >/dev/null 2>&1 || true
        fi
        if [ -n "$nspawn_pid" ]; then
                for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
                kill -KILL "$nspawn_pid" 2>/dev/null || true
                wait "$nspawn_pid" 2>/dev/null || true
        fi
        [ -z "$scratch" ] || rm -rf "$scratch"
        exit $rc
}
trap cleanup EXIT
trap 'exit 1' TERM INT HUP # meson's timeout: still power the container off and remove the copy

# has PATTERN: whether stdin has PATTERN, read to its end (grep -q would stop early, and
# pipefail would count the writer's SIGPIPE as a failure).
has() {
        local s
        s=$(cat)
        grep -q -- "$1" <<<"$s"
}

# serves POOL: allocctl status on stdin lists POOL as served, not among the pools "not available"
# (allocd starts, and reloads, without a pool the machine cannot make, and lists it so).
serves() {
        local s
        s=$(cat)
        grep -- "^$1 " <<<"$s" | grep -qv "not available"
}

# ct CMD...: CMD inside the container, with the container's environment rather than ours.
ct() { nsenter -t "$pid1" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, systemd-nspawn); run ./dev.sh test as root"
command -v debootstrap >/dev/null && command -v systemd-nspawn >/dev/null ||
        skip "needs debootstrap and systemd-nspawn (packages debootstrap, systemd-container: scripts/install-deps.sh)"

# The root, debootstrapped once from the machine's own Debian mirror and kept as a tarball.
tarball=$cache/bookworm-$(echo "$pkgs" | md5sum | cut -c1-8).tar
if [ ! -f "$tarball" ]; then
        # The first Debian archive (not security) in the machine's apt sources, one-line or deb822.
        mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
                sed -n -E 's/^URIs: *//p; s/^deb (\[[^]]*\] )?//p' | tr ' ' '\n' | grep -E '^https?://.*/debian/?$' |
                sed -n 1p) || true
        [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
        say "debootstrapping a Debian 12 root from $mirror into $tarball (once; about a minute)"
        mkdir -p "$cache"
        tmp=$(mktemp -d "$cache/root.XXXXXX")
        if ! debootstrap --variant=minbase --include="$pkgs" bookworm "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1; then
                rm -rf "$tmp"
                skip "debootstrap failed (no network?); see $cache/debootstrap.log"
        fi
        chmod 755 "$tmp" # mktemp's 0700 would be the container's /, closed to every user but root
        tar -C "$tmp" -cf "$tarball.new" . && mv "$tarball.new" "$tarball"
        rm -rf "$tmp"
fi

# README: meson setup build-system --prefix=/usr && meson install -C build-system
sys=$build/nspawn/build-system
say "building $src with --prefix=/usr in $sys"
mkdir -p "$build/nspawn"
[ -f "$sys/build.ninja" ] || meson setup "$sys" "$src" --prefix=/usr -Dtests=false -Dbench=false >"$build/nspawn/setup.log" 2>&1 ||
        fail "meson setup --prefix=/usr failed: $(tail -n 20 "$build/nspawn/setup.log")"
meson compile -C "$sys" >"$build/nspawn/compile.log" 2>&1 || fail "the --prefix=/usr build failed: $(tail -n 20 "$build/nspawn/compile.log")"

scratch=$(mktemp -d /var/tmp/allocd-nspawn.XXXXXX)
root=$scratch/root
mkdir "$root"
tar -C "$root" -xf "$tarball"
chmod 755 "$root"
meson install -C "$sys" --destdir "$root" --no-rebuild --quiet >"$scratch/install.log" 2>&1 ||
        fail "meson install failed: $(cat "$scratch/install.log")"
install -m 755 "$helper" "$root/usr/local/bin/helper-client"
# Nothing here needs D-Bus (systemctl reaches systemd over its private socket as root), and
# dbus-daemon waits 25 s for systemd1 in some containers (a host with cgroup v1), holding up boot.
for u in dbus.service dbus.socket systemd-logind.service; do ln -sf /dev/null "$root/etc/systemd/system/$u"; done

# The container's systemd can raise no limit above the one it inherits: without CAP_SYS_RESOURCE
# here (a container host may withhold it) the locked pool must fit under this hard limit.
ulimit -Hl unlimited 2>/dev/null && ulimit -Sl unlimited || true
lock_mib=64
if [ "$(ulimit -Hl)" != unlimited ]; then
        lock_mib=$(($(ulimit -Hl) / 2048))
        say "RLIMIT_MEMLOCK here is $(ulimit -Hl) kB and cannot be raised (no CAP_SYS_RESOURCE): a ${lock_mib} MiB locked pool"
fi
[ "$lock_mib" -ge 1 ] || skip "RLIMIT_MEMLOCK is $(ulimit -Hl) kB and cannot be raised: no room for a locked pool"

say "booting the root (systemd-nspawn --boot)"
# --register=no --keep-unit: there may be no systemd and no D-Bus on this side.
# --capability=CAP_IPC_LOCK: nspawn's own seccomp filter refuses mlock to the whole container
# without it (EPERM, even within RLIMIT_MEMLOCK).  allocd itself gets no capability: its unit
# has an empty CapabilityBoundingSet=, checked below; LimitMEMLOCK= is what lets it lock.
setsid systemd-nspawn -D "$root" --boot --register=no --keep-unit --console=passive -M "$machine" \
        --capability=CAP_IPC_LOCK \
        >"$scratch/boot.log" 2>&1 </dev/null &
nspawn_pid=$!
for _ in $(seq 200); do
        c=$(pgrep -P "$nspawn_pid" | head -n 1) || true
        if [ -n "$c" ] && [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ]; then
                pid1=$c
                break
        fi
        kill -0 "$nspawn_pid" 2>/dev/null || break
        sleep 0.1
done
[ -n "$pid1" ] || skip "systemd-nspawn cannot boot a container here: $(tail -n 3 "$scratch/boot.log" | tr '\n' ' ')"
# systemctl needs systemd's private socket, which comes a moment after PID 1 does.
for _ in $(seq 100); do [ -S "/proc/$pid1/root/run/systemd/private" ] && break; sleep 0.1; done
state=$(ct timeout 60 systemctl is-system-running --wait) || true
case "$state" in
running) ;;
degraded) say "booted, degraded: $(ct systemctl --failed --plain --no-legend | tr '\n' ' ')" ;;
*) skip "the container's systemd did not come up (state '$state'): $(tail -n 3 "$scratch/boot.log" | tr '\n' ' ')" ;;
esac

# Now the README's "Run it as a service", command by command.
say "systemd-sysusers; the example config; daemon-reload"
ct systemd-sysusers || fail "systemd-sysusers failed"
ct id allocd >/dev/null || fail "systemd-sysusers did not create the user allocd"
ct install -D -m 644 /usr/share/doc/allocd/allocd.conf /etc/allocd/allocd.conf ||
        fail "no example config at /usr/share/doc/allocd/allocd.conf"
ct systemctl daemon-reload

say "systemctl enable --now allocd.socket"
ct systemctl enable --now allocd.socket >/dev/null 2>&1 || fail "systemctl enable --now allocd.socket failed"
[ "$(ct systemctl is-active allocd.service)" = inactive ] || fail "allocd started before anyone connected"

say "allocctl status starts allocd (socket activation)"
out=$(ct allocctl status 2>&1) || fail "the first allocctl status failed: $out"
grep -q fpga0 <<<"$out" || fail "allocctl status does not list fpga0: $out"
[ "$(ct systemctl is-active allocd.service)" = active ] || fail "allocd.service is not active after allocctl status"
[ "$(ct systemctl show -p User --value allocd.service)" = allocd ] || fail "allocd.service does not run as allocd"
mainpid=$(ct systemctl show -p MainPID --value allocd.service)
[ "$(ct stat -c %U "/proc/$mainpid")" = allocd ] || fail "allocd (pid $mainpid) does not run as user allocd"
caps=$(ct sed -n 's/^CapBnd:\t//p' "/proc/$mainpid/status")
[ "$caps" = 0000000000000000 ] || fail "allocd has capabilities in its bounding set: $caps"

say "STATUS= (systemctl show -p StatusText)"
st=$(ct systemctl show -p StatusText --value allocd.service)
grep -q ' pool' <<<"$st" || fail "StatusText is '$st'"
say "  $st"

say "systemctl reload with a good config: a locked pool (lock = yes) appears"
ct sh -c "printf '\n[pool locked]\nkind = host\nsize = ${lock_mib}M\nlock = yes\nmode = 0666\n' >>/etc/allocd/allocd.conf"
ct systemctl reload allocd || fail "systemctl reload with a good config failed"
for _ in $(seq 50); do ct allocctl status 2>/dev/null | serves locked && break; sleep 0.1; done
ct allocctl status | serves locked || fail "the locked pool did not appear after the reload"
vmlck=$(ct sed -n 's/^VmLck:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$mainpid/status")
[ "${vmlck:-0}" -ge $((lock_mib * 1024)) ] || fail "allocd has ${vmlck:-0} kB locked, not the pool's $lock_mib MiB"

say "a non-root user allocates from the locked pool"
ct useradd -M alice || fail "useradd alice failed"
# No ALLOCD_SOCKET: clients find /run/allocd/allocd.sock whoever runs them.
out=$(ct runuser -u alice -- allocctl status 2>&1) ||
        fail "allocctl status as alice failed: $out"
out=$(ct runuser -u alice -- /usr/local/bin/helper-client /run/allocd/allocd.sock alloc locked 4096 2>&1) ||
        fail "alice could not allocate from the locked pool: $out"

say "systemctl reload with a bad config fails, and allocd keeps running"
ct cp /etc/allocd/allocd.conf /etc/allocd/allocd.conf.good
ct sh -c 'printf "\n[pool broken]\nkind = nonsense\n" >>/etc/allocd/allocd.conf'
if ct systemctl reload allocd >/dev/null 2>&1; then fail "systemctl reload with a bad config succeeded"; fi
[ "$(ct systemctl is-active allocd.service)" = active ] || fail "allocd stopped after a bad reload"
[ "$(ct systemctl show -p MainPID --value allocd.service)" = "$mainpid" ] || fail "allocd was restarted by a bad reload"
ct allocctl status | serves locked || fail "allocd lost the locked pool on a bad reload"
ct mv /etc/allocd/allocd.conf.good /etc/allocd/allocd.conf

say "systemctl restart allocd"
ct systemctl restart allocd || fail "systemctl restart allocd failed"
[ "$(ct systemctl show -p MainPID --value allocd.service)" != "$mainpid" ] || fail "the restart kept the same process"
ct allocctl status | serves locked || fail "allocctl status after the restart does not list the locked pool"

say "systemd-analyze security allocd.service"
level=$(ct systemd-analyze security allocd.service | sed -n 's/.*Overall exposure level for allocd.service: \([0-9.]*\).*/\1/p')
[ -n "$level" ] || fail "systemd-analyze security printed no overall exposure level"
say "  exposure $level"
awk -v l="$level" 'BEGIN { exit !(l <= 1.5) }' || fail "exposure level $level is above 1.5"

say "without /etc/allocd/allocd.conf allocd serves the built-in pools and says so"
ct rm /etc/allocd/allocd.conf
ct systemctl restart allocd || fail "allocd does not start without a config"
out=$(ct allocctl status) || fail "allocctl status failed with the built-in pools"
grep -q fpga0 <<<"$out" && ! grep -q locked <<<"$out" || fail "not the built-in pools: $out"
# The journal may take a moment to have the line.
for _ in $(seq 50); do
        ct journalctl --no-pager -u allocd | has 'no /etc/allocd/allocd.conf; serving the built-in pools' && break
        sleep 0.1
done
ct journalctl --no-pager -u allocd | has 'no /etc/allocd/allocd.conf; serving the built-in pools' ||
        fail "allocd did not say that it serves the built-in pools"
say "the journal's CODE_FILE= and CODE_FUNC= are where allocd logged a line, not its logging function"
code=$(ct journalctl --no-pager -o export _SYSTEMD_UNIT=allocd.service _COMM=allocd | grep -a '^CODE_F' | sort -u)
grep -q '^CODE_FILE=.*daemon/main\.c$' <<<"$code" && ! grep -qE '^CODE_FUNC=(logx|log_at)$' <<<"$code" ||
        fail "allocd's journal lines name the logging function as their place: $(tr '\n' ' ' <<<"$code")"

say "systemctl stop allocd"
ct systemctl stop allocd 2>/dev/null || fail "systemctl stop allocd failed"
[ "$(ct systemctl is-active allocd.service)" = inactive ] || fail "allocd.service is still active after stop"
ct systemctl stop allocd.socket

# Issue 18: systemctl restart keeps every region (systemd's fd store); stop + start keeps none.
say "the unit's fd store: FileDescriptorStoreMax= and FDSTORE (systemd 252 does not set FDSTORE itself)"
[ "$(ct systemctl show -p FileDescriptorStoreMax --value allocd.service)" = 4096 ] ||
        fail "FileDescriptorStoreMax is '$(ct systemctl show -p FileDescriptorStoreMax --value allocd.service)', not 4096"
ct systemctl show -p Environment --value allocd.service | tr ' ' '\n' | has '^FDSTORE=4096$' ||
        fail "the unit's Environment= has no FDSTORE=4096: $(ct systemctl show -p Environment --value allocd.service)"
ct sh -c "printf '[pool keep]\nkind = host\nsize = 64M\nmode = 0666\n' >/etc/allocd/allocd.conf"
ct systemctl start allocd.socket allocd || fail "allocd did not start with the [pool keep] config"
mainpid=$(ct systemctl show -p MainPID --value allocd.service)
ct cat "/proc/$mainpid/environ" | tr '\0' '\n' | has '^FDSTORE=4096$' || fail "allocd (pid $mainpid) was started without FDSTORE=4096"

say "systemctl restart allocd while a client holds 8 named regions and 4 PERSIST ones are held by none"
sock=/run/allocd/allocd.sock
out=$(ct /usr/local/bin/helper-client $sock persist 4 keep </dev/null) || fail "helper-client persist 4 keep: $out"
# The holder keeps its regions (each holding its name as text) until its stdin, a fifo, closes.
mkfifo "$scratch/hold"
ct /usr/local/bin/helper-client $sock names 8 keep <"$scratch/hold" >"$scratch/names.out" 2>&1 &
holder=$!
exec {hold}>"$scratch/hold"
for _ in $(seq 100); do [ -s "$scratch/names.out" ] && break; sleep 0.1; done
[ "$(cat "$scratch/names.out")" = "8 0 -" ] || fail "helper-client names 8 keep: $(cat "$scratch/names.out")"
# allocctl --json dump, one region a line, without the ages, which move with the clock.
dump() { ct allocctl --json dump | sed -E 's/"age": [0-9]+, //'; }
before=$(dump) || fail "allocctl --json dump failed: $before"
[ "$(grep -c '"id": ' <<<"$before")" = 12 ] || fail "not 12 regions before the restart: $before"
# README's upgrade: daemon-reload (new units) before the restart, and it keeps the store.
ct systemctl daemon-reload || fail "systemctl daemon-reload failed"
ct systemctl restart allocd || fail "systemctl restart allocd failed"
newpid=$(ct systemctl show -p MainPID --value allocd.service)
[ "$newpid" != "$mainpid" ] || fail "the restart kept the same process"
after=$(dump) || fail "allocctl --json dump after the restart failed: $after"
[ "$after" = "$before" ] || fail "the dump changed across systemctl restart: $(diff <(echo "$before") <(echo "$after") | head -n 20)"
ct journalctl --no-pager -u allocd | has 'restored from the fd store' || fail "allocd did not say it restored from the fd store"
out=$(ct /usr/local/bin/helper-client $sock expect helper-3 helper-3 2>&1) ||
        fail "helper-3's bytes are not there after the restart (exit $?): $out"
[ "$(grep -c '"persist"' <<<"$after")" = 4 ] || fail "not 4 PERSIST regions after the restart: $after"

say "allocd killed (SIGKILL): Restart=on-failure starts it again with the same regions"
# This test has started allocd more than StartLimitBurst= (5) times in 10 s: without this the restart
# is refused ("Start request repeated too quickly") and the unit fails.
ct systemctl reset-failed allocd.service
# The main process alone, as a crash: on a host whose cgroup v1 tree gives the container EIO when
# systemd reads a unit's processes, killing the whole cgroup fails after allocd is dead.
ct systemctl kill --kill-who=main -s SIGKILL allocd.service
for _ in $(seq 100); do
        pid=$(ct systemctl show -p MainPID --value allocd.service)
        [ "$pid" != 0 ] && [ "$pid" != "$newpid" ] && [ "$(ct systemctl is-active allocd.service)" = active ] && break
        sleep 0.1
done
[ "$pid" != "$newpid" ] && [ "$pid" != 0 ] || fail "systemd did not start allocd again after SIGKILL"
after=$(dump) || fail "allocctl --json dump after the kill failed: $after"
[ "$after" = "$before" ] || fail "the dump changed across a SIGKILL: $(diff <(echo "$before") <(echo "$after") | head -n 20)"

say "systemctl restart with an invalid file: allocd waits, serving nobody, and the store stays (a failed unit's is emptied)"
ct cp /etc/allocd/allocd.conf /etc/allocd/allocd.conf.good
ct sh -c 'printf "\n[pool broken]\nkind = nonsense\n" >>/etc/allocd/allocd.conf'
ct systemctl restart allocd || fail "systemctl restart with an invalid file failed (the unit failed: its store is gone)"
ct systemctl show -p StatusText --value allocd.service | has 'the configuration is invalid' ||
        fail "STATUS= does not say the file is invalid: $(ct systemctl show -p StatusText --value allocd.service)"
ct mv /etc/allocd/allocd.conf.good /etc/allocd/allocd.conf
ct systemctl restart allocd || fail "systemctl restart after the fix failed"
after=$(dump) || fail "allocctl --json dump after the fixed restart failed: $after"
[ "$after" = "$before" ] || fail "the dump changed across a restart with an invalid file: $(diff <(echo "$before") <(echo "$after") | head -n 20)"
exec {hold}>&-
wait "$holder" || fail "helper-client names 8 keep failed after the restarts: $(cat "$scratch/names.out")"

say "systemctl stop + start empties the store: no region, no name"
ct systemctl stop allocd || fail "systemctl stop allocd failed"
ct systemctl start allocd || fail "systemctl start allocd failed"
after=$(dump) || fail "allocctl --json dump after stop + start failed: $after"
[ "$(grep -c '"id": ' <<<"$after")" = 0 ] || fail "regions came back after stop + start: $after"
if out=$(ct /usr/local/bin/helper-client $sock attach helper-3 2>&1); then rc=0; else rc=$?; fi
[ "$rc" = 2 ] || fail "attach of helper-3 after stop + start: exit $rc, not ENOENT (2): $out"
ct systemctl stop allocd allocd.socket
say "ok"
