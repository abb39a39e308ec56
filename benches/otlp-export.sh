#!/usr/bin/env bash
# msbd CPU spent on OTLP metric export, per sandbox per minute, with COUNT sandboxes running.
# The same sandboxes are watched by msbd without export and with export (OTLP/HTTP to a local
# sink that answers 200), msbd being restarted between the two (sandboxes survive it), in
# alternating rounds; the difference of msbd's CPU time (utime + stime) is the export's cost.
# Exports run every second here (60 per minute) to measure well above noise; the figure is
# also given for the default interval (60 s). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/msb-target}"
MSB="${MSB_BIN:-$CARGO_TARGET_DIR/release/msb}"
export MSB_AGENTD="${MSB_AGENTD:-$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/msb-agentd}"
export MSB_HOME="$(mktemp -d /tmp/msb-otlp-XXXXXX)"
export MSB_PROMETHEUS_ADDR=off
COUNT="${COUNT:-100}"
WINDOW="${WINDOW:-20}"
ROUNDS="${ROUNDS:-3}"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 1; }
work=$(mktemp -d)
sink_pid=""
cleanup() {
    for i in $(seq 1 "$COUNT"); do "$MSB" rm -f "s$i" >/dev/null 2>&1 || true; done
    "$MSB" server stop >/dev/null 2>&1 || true
    [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
    rm -rf "$MSB_HOME" "$work"
}
trap cleanup EXIT

# The sink: accepts OTLP/HTTP posts, answers 200 with an empty ExportMetricsServiceResponse.
cat > "$work/sink.py" <<'PY'
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
        with open(sys.argv[2], "a") as log:
            log.write(self.headers.get("content-length", "0") + "\n")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$work/sink.py" "$port" "$work/posts" &
sink_pid=$!

echo "starting $COUNT sandboxes..."
for i in $(seq 1 "$COUNT"); do "$MSB" run -n "s$i" -d -- sleep 100000 >/dev/null; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Restarts msbd with the given environment and prints its CPU seconds over WINDOW seconds.
measure() {
    "$MSB" server stop >/dev/null 2>&1 || true
    env "$@" "$MSB" ls >/dev/null
    local pid
    pid=$(cat "$MSB_HOME/msbd.pid")
    sleep 3
    local before after
    before=$(cpu_ticks "$pid")
    sleep "$WINDOW"
    after=$(cpu_ticks "$pid")
    python3 -c "print(($after - $before) / $(getconf CLK_TCK))"
}

: > "$work/results"
for round in $(seq 1 "$ROUNDS"); do
    off=$(measure OTEL_SDK_DISABLED=true)
    : > "$work/posts"
    on=$(measure OTEL_EXPORTER_OTLP_METRICS_ENDPOINT="http://127.0.0.1:$port/v1/metrics" \
        OTEL_TRACES_EXPORTER=none OTEL_METRIC_EXPORT_INTERVAL=1000)
    posts=$(wc -l < "$work/posts")
    bytes=$(awk '{s += $1} END {print s + 0}' "$work/posts")
    echo "round $round: msbd CPU without export ${off}s, with export ${on}s over ${WINDOW}s; $posts exports, $bytes bytes"
    echo "$off $on $posts $bytes" >> "$work/results"
done
python3 - "$work/results" "$COUNT" "$WINDOW" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
count, window = int(sys.argv[2]), float(sys.argv[3])
diffs = [on - off for off, on, posts, _ in rows]
per_export = statistics.median([(on - off) / posts for off, on, posts, _ in rows if posts])
size = statistics.median([b / p for _, _, p, b in rows if p])
print(f"{count} sandboxes: export CPU {statistics.median(diffs) * 1000 / window:.1f} ms per second at a 1 s interval")
print(f"per export: {per_export * 1e3:.2f} ms CPU, {size / 1024:.0f} KiB body")
print(f"per sandbox per minute: {per_export * 60 / count * 1e6:.0f} us CPU at a 1 s interval, "
      f"{per_export / count * 1e6:.1f} us at the default 60 s interval")
PY
