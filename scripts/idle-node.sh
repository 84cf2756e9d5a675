#!/usr/bin/env bash
# Idle node memory and CPU: start one `medmesh node start` (release build) with an
# empty store, let it settle, then read its resident memory and the CPU time it
# used over a window. Usage: scripts/idle-node.sh [WINDOW_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
window="${1:-60}"
[ -x target/release/medmesh ] || cargo build --release -p cli
tmp="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
target/release/medmesh --home "$tmp/home" keys generate >/dev/null
target/release/medmesh --home "$tmp/home" network create --name idle --out "$tmp/root.cbor" >/dev/null
target/release/medmesh node start --data-dir "$tmp/node" --root "$tmp/root.cbor" --listen /ip4/127.0.0.1/tcp/0 >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -f "$tmp/node/control.addr" ] && break; sleep 0.1; done
[ -f "$tmp/node/control.addr" ] || { echo "node did not start; log:" >&2; cat "$tmp/log" >&2; exit 1; }
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz="$(getconf CLK_TCK)"
t0="$(ticks)"; sleep "$window"; t1="$(ticks)"
rss_kb="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
echo "idle node: resident memory $((rss_kb / 1024)) MiB; CPU $(awk -v d=$((t1 - t0)) -v hz="$hz" -v w="$window" 'BEGIN {printf "%.2f", 100 * d / hz / w}') % of one core over ${window} s"
