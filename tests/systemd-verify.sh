#!/usr/bin/env bash
# systemd-analyze verify on the shipped units, pointed at the allocd just built.
# It only warns about unknown or misspelt keys, so any output at all fails.
set -euo pipefail
allocd=$1 service=$2 socket=$3
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not installed" >&2; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed -e "s|^ExecStart=[^ ]*|ExecStart=$allocd|" -e "s|^ExecReload=[^ ]*/allocd |ExecReload=$allocd |" \
        "$service" >"$dir/allocd.service"
cp "$socket" "$dir/allocd.socket"
out=$(cd "$dir" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no allocd.socket allocd.service 2>&1) || {
        echo "$out" >&2
        echo "systemd-analyze verify failed" >&2
        exit 1
}
if [ -n "$out" ]; then
        echo "$out" >&2
        echo "systemd-analyze verify printed warnings (above)" >&2
        exit 1
fi
echo "systemd-analyze verify: no warnings"
