#!/usr/bin/env bash
# Prometheus scrape cost with 100 sandboxes running: latency (median, p99) and body size of
# GET /metrics on msbd, measured with hyperfine. Target (issue 4): p99 < 50 ms. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/msb-target}"
MSB="${MSB_BIN:-$CARGO_TARGET_DIR/msb-bin/msb}"
export MSB_AGENTD="${MSB_AGENTD:-$CARGO_TARGET_DIR/msb-bin/msb-agentd}"
export MSB_HOME="$(mktemp -d /tmp/msb-scrape-XXXXXX)"
export MSB_PROMETHEUS_ADDR=127.0.0.1:0
COUNT="${COUNT:-100}"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for tool in hyperfine curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install $tool)" >&2; exit 1; }
done
work=$(mktemp -d)
cleanup() {
    for i in $(seq 1 "$COUNT"); do "$MSB" rm -f "s$i" >/dev/null 2>&1 || true; done
    "$MSB" server stop >/dev/null 2>&1 || true
    rm -rf "$MSB_HOME" "$work"
}
trap cleanup EXIT

echo "starting $COUNT sandboxes..."
for i in $(seq 1 "$COUNT"); do "$MSB" run -n "s$i" -d -- sleep 100000 >/dev/null; done
sleep 3
address=$("$MSB" server status --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["prometheus_address"])')
bytes=$(curl -s "http://$address/metrics" | wc -c)
series=$(curl -s "http://$address/metrics" | grep -cE '^(microsandbox|container)_' || true)
hyperfine -N --warmup 10 --runs 300 --export-json "$work/scrape.json" "curl -s -o /dev/null http://$address/metrics" >/dev/null
python3 - "$work/scrape.json" "$bytes" "$series" "$COUNT" <<'PY'
import json, sys
times = sorted(json.load(open(sys.argv[1]))["results"][0]["times"])
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
print(f"{sys.argv[4]} sandboxes, {sys.argv[3]} per-sandbox series, body {int(sys.argv[2]) / 1024:.0f} KiB")
print(f"scrape latency (curl included): median {pick(0.5):.1f} ms, p90 {pick(0.9):.1f} ms, p99 {pick(0.99):.1f} ms (target p99 < 50 ms)")
PY
