#!/usr/bin/env bash
# Sampling cost with 50 sandboxes running: the sampler's own CPU per sandbox per sample
# (cargo bench -p msb-runtime --bench sampler, over the real cgroup files), and the whole
# supervisor's CPU per sample over 30 s (heartbeat relay and delivery to msbd included).
# Target (issue 3): <= 10 µs CPU per sandbox per sample. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/msb-target}"
MSB="${MSB_BIN:-$CARGO_TARGET_DIR/msb-bin/msb}"
export MSB_AGENTD="${MSB_AGENTD:-$CARGO_TARGET_DIR/msb-bin/msb-agentd}"
export MSB_HOME="$(mktemp -d /tmp/msb-sampling-XXXXXX)"
COUNT="${COUNT:-50}"
WINDOW="${WINDOW:-30}"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
cleanup() {
    for i in $(seq 1 "$COUNT"); do "$MSB" rm -f "s$i" >/dev/null 2>&1 || true; done
    "$MSB" server stop >/dev/null 2>&1 || true
    rm -rf "$MSB_HOME"
}
trap cleanup EXIT

echo "starting $COUNT sandboxes..."
for i in $(seq 1 "$COUNT"); do "$MSB" run -n "s$i" -d -- sleep 100000 >/dev/null; done
sleep 3
cargo bench -q -p msb-runtime --bench sampler 2>/dev/null | grep -v '^$'

ticks() { # total utime+stime (clock ticks) of every supervisor of this home
    local total=0
    for pid in $(pgrep -f "msb-supervisor --name s[0-9]+ "); do
        set -- $(sed 's/.*) //' "/proc/$pid/stat")
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
before=$(ticks); sleep "$WINDOW"; after=$(ticks)
hz=$(getconf CLK_TCK)
python3 - "$before" "$after" "$hz" "$COUNT" "$WINDOW" <<'PY'
import sys
before, after, hz, count, window = map(int, sys.argv[1:])
cpu_s = (after - before) / hz
print(f"whole supervisors over {window} s: {cpu_s:.2f} s CPU = {cpu_s / (count * window) * 1e6:.0f} µs per sandbox per second "
      f"(sampling, heartbeat relay, sample delivery, tokio)")
PY
