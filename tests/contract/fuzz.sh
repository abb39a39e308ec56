#!/usr/bin/env bash
# Schema-driven fuzzing of a real msbd against the OpenAPI document it serves (`msbd openapi`):
# schemathesis generates valid and invalid requests from the document and checks that msbd
# answers as the document says. Starts a throwaway MSB_HOME and msbd, bridges msbd's unix socket
# to loopback TCP (bridge.py), runs schemathesis, removes what it created and stops msbd.
# Exits non-zero when a check fails or when any operation refuses most of the valid inputs.
#
# Needs root (the fuzzer's valid create requests start real namespace sandboxes) and
# schemathesis (SCHEMATHESIS, else /var/tmp/msb-schemathesis/bin/schemathesis as .ci/run
# installs it, else on PATH). Binaries from MSB_BIN_DIR (msbd, msb-supervisor, msb-agentd).
# MSB_FUZZ_EXAMPLES bounds the examples per operation (default 15: about five minutes on two cores).
#
# Not fuzzed, and why:
# - GET /v1/sandboxes/{name}/session: a 101 upgrade to msb-session framing; HTTP fuzzers
#   cannot speak the protocol after the upgrade.
# - POST /v1/server/shutdown: stops the msbd under test.
# - GET /v1/metrics/stream and GET /v1/sandboxes/{name}/logs: ndjson streams that stay open
#   (until the client leaves, or with `follow` until the sandbox stops), so a response never
#   completes within a fuzzer's request.
# - POST /v1/sandboxes/{name}/wait: a long poll that answers when the sandbox's run ends, which
#   for a fuzzed sandbox (any command, or one held for a client that never attaches) may be
#   never.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin_dir=${MSB_BIN_DIR:?set MSB_BIN_DIR to the directory holding msbd, msb-supervisor and msb-agentd}
examples=${MSB_FUZZ_EXAMPLES:-15}
st=${SCHEMATHESIS:-}
if [ -z "$st" ]; then
    if [ -x /var/tmp/msb-schemathesis/bin/schemathesis ]; then
        st=/var/tmp/msb-schemathesis/bin/schemathesis
    else
        st=$(command -v schemathesis || true)
    fi
fi
[ -n "$st" ] || { echo "schemathesis is not installed" >&2; exit 77; }

work=$(mktemp -d /tmp/msb-fuzz.XXXXXX)
export MSB_HOME="$work/home" MSB_FUZZ_SCRATCH="$work/scratch" MSB_FUZZ_TALLY="$work/tally.ndjson"
mkdir -p "$MSB_HOME" "$MSB_FUZZ_SCRATCH"
: > "$MSB_FUZZ_TALLY"
msbd_pid= bridge_pid=
finish() {
    if [ -S "$MSB_HOME/msbd.sock" ]; then
        python3 "$here/report.py" cleanup "$MSB_HOME/msbd.sock" || true
    fi
    [ -z "$bridge_pid" ] || kill "$bridge_pid" 2>/dev/null || true
    if [ -n "$msbd_pid" ]; then
        for _ in $(seq 50); do kill -0 "$msbd_pid" 2>/dev/null || break; sleep 0.1; done
        kill "$msbd_pid" 2>/dev/null || true
        wait "$msbd_pid" 2>/dev/null || true
    fi
    if [ -n "${MSB_FUZZ_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap finish EXIT

MSB_AGENTD="$bin_dir/msb-agentd" MSB_PROMETHEUS_ADDR=off MSB_WARM_SUPERVISORS=0 \
    "$bin_dir/msbd" --log-level warn > "$work/msbd.out" 2>&1 &
msbd_pid=$!
for _ in $(seq 100); do [ -S "$MSB_HOME/msbd.sock" ] && break; sleep 0.1; done
[ -S "$MSB_HOME/msbd.sock" ] || { cat "$work/msbd.out" >&2; echo "msbd did not start" >&2; exit 1; }
python3 "$here/bridge.py" "$MSB_HOME/msbd.sock" "$work/port" &
bridge_pid=$!
for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
"$bin_dir/msbd" openapi > "$work/openapi.json"

status=0
# schemathesis keeps its example database in the working directory: the throwaway one.
cd "$work"
SCHEMATHESIS_HOOKS="$here/hooks.py" "$st" --config-file "$here/schemathesis.toml" run "$work/openapi.json" \
    --url "http://127.0.0.1:$port" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance,negative_data_rejection \
    --exclude-operation-id sandbox_session \
    --exclude-operation-id server_shutdown \
    --exclude-operation-id stream_metrics \
    --exclude-operation-id sandbox_logs \
    --exclude-operation-id wait_sandbox \
    --max-examples "$examples" --seed "${MSB_FUZZ_SEED:-1}" --workers 1 \
    --request-timeout 60 --suppress-health-check all \
    --warnings off --no-color "$@" || status=$?
echo
python3 "$here/report.py" tally "$MSB_FUZZ_TALLY" | tee "$work/tally.txt"
if ! tail -1 "$work/tally.txt" | grep -q ': 0 of'; then
    echo "some operations refuse most valid inputs" >&2
    status=1
fi
exit "$status"
