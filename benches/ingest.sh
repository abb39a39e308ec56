#!/usr/bin/env bash
# Ingest cost with 100 sandboxes sampling at 1 Hz: msbd's own CPU time (utime + stime from
# /proc/<msbd>/stat) over a 30 s window, per sandbox per sample stored in that window. That is
# everything msbd does for samples: reading the watch connections, live state, history writes
# (DuckDB commits included) and acknowledgements. Target (issue 10): < 0.2 ms. Run as root.
#
#   ./benches/ingest.sh
#   COUNT=50 WINDOW=60 ./benches/ingest.sh
#   MSB_BIN=/path/to/other/build/msb ./benches/ingest.sh   # msbd, the supervisor and the
#                                                          # agent are taken from beside it
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/msb-target}"
MSB="${MSB_BIN:-$CARGO_TARGET_DIR/msb-bin/msb}"
export MSB_AGENTD="${MSB_AGENTD:-$(dirname "$MSB")/msb-agentd}"
export MSB_HOME="$(mktemp -d /tmp/msb-ingest-XXXXXX)"
export MSB_PROMETHEUS_ADDR=127.0.0.1:0
COUNT="${COUNT:-100}"
WINDOW="${WINDOW:-30}"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is missing (apt-get install python3)" >&2; exit 1; }
cleanup() {
    for i in $(seq 1 "$COUNT"); do "$MSB" rm -f "s$i" >/dev/null 2>&1 || true; done
    "$MSB" server stop >/dev/null 2>&1 || true
    rm -rf "$MSB_HOME"
}
trap cleanup EXIT

echo "starting $COUNT sandboxes ($MSB)..."
for i in $(seq 1 "$COUNT"); do "$MSB" run -n "s$i" -d -- sleep 100000 >/dev/null; done
# Every sandbox samples within its first second; give the starts' own work time to settle.
sleep 5
pid=$(cat "$MSB_HOME/msbd.pid")

cpu_ticks() { # utime + stime of msbd, in clock ticks
    set -- $(sed 's/.*) //' "/proc/$pid/stat")
    echo $((${12} + ${13}))
}
now_ms() { date +%s%3N; }

start_ms=$(now_ms); before=$(cpu_ticks)
sleep "$WINDOW"
after=$(cpu_ticks); end_ms=$(now_ms)
# Counted after the window (the query flushes the writer; its own cost is outside the window).
samples=$("$MSB" metrics --format json --sql \
    "SELECT count(*) AS n FROM samples WHERE ts_ms >= $start_ms AND ts_ms < $end_ms" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["n"])')
python3 - "$before" "$after" "$(getconf CLK_TCK)" "$COUNT" "$start_ms" "$end_ms" "$samples" <<'PY'
import sys
before, after, hz, count, start_ms, end_ms, samples = map(int, sys.argv[1:])
cpu_ms = (after - before) * 1000 / hz
window_s = (end_ms - start_ms) / 1000
print(f"{count} sandboxes, {window_s:.1f} s window, {samples} samples stored "
      f"({samples / (count * window_s):.2f} per sandbox per second)")
print(f"msbd CPU: {cpu_ms:.0f} ms = {cpu_ms / window_s:.1f} ms per second = "
      f"{cpu_ms / max(samples, 1):.3f} ms per sandbox per sample (target < 0.2)")
PY
