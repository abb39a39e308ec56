#!/usr/bin/env bash
# Two msb builds against each other and crun, back to back, in the same run: is a change faster?
#
# `lifecycle.sh` measures one build; its ratio to crun moves by 0.3x or more between runs a few
# minutes apart on a shared 2-core machine, more than most changes. This script starts one msbd
# per build (each in its own MSB_HOME, with its own warm supervisors) and measures, alternately:
#
#   wall:  `msb run -- true` of each build and `crun run` (busybox root, `true`), back to back,
#          in ROUNDS hyperfine invocations that hold all three commands in alternating order;
#          the raw times of all rounds are pooled into a median per command, and the ratios to
#          crun are given;
#   cpu:   the whole machine's CPU time per run (user + system from /proc/stat) over CPU_RUNS
#          back-to-back runs of each build, PAIRS times alternately: what a run costs, with
#          what it leaves to do in the background (its clean-up, the next warm supervisor).
#
# Usage (as root):  benches/ab.sh BEFORE_MSB AFTER_MSB
#   e.g. benches/ab.sh /usr/local/bin/msb /var/tmp/msb-target/msb-bin/msb
# Each build's msbd, supervisor and agent are the ones beside its msb (MSB_AGENTD is not
# passed on). Environment: ROUNDS (default 6), RUNS (20 per command and round), WARMUP (3),
# CPU_RUNS (60), PAIRS (3), BENCH_KEEP=1 keeps the work directory. Reports, never asserts.
set -euo pipefail

ROUNDS=${ROUNDS:-6}
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-3}
CPU_RUNS=${CPU_RUNS:-60}
PAIRS=${PAIRS:-3}

say() { printf '%s\n' "$*" >&2; }
die() { say "ab.sh: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (msb's namespace backend and crun need it)"
[ $# = 2 ] || die "usage: $0 BEFORE_MSB AFTER_MSB"
for tool in hyperfine crun python3 unshare mountpoint; do
    command -v "$tool" >/dev/null \
        || die "$tool is missing: apt-get install hyperfine crun python3 util-linux"
done
CRUN=$(command -v crun)
before=$(readlink -f "$1")
after=$(readlink -f "$2")
for msb in "$before" "$after"; do
    [ -x "$msb" ] || die "no msb at $msb"
    [ -x "$(dirname "$msb")/msb-agentd" ] || die "no msb-agentd beside $msb"
done
unset MSB_AGENTD MSB_SUPERVISOR

# shellcheck source=benches/crun-ns.sh
source "$(dirname "$0")/crun-ns.sh"

work=$(mktemp -d /tmp/msb-ab.XXXXXX)
homes=("$work/before" "$work/after")
builds=("$before" "$after")
mkdir -p "${homes[@]}" "$work/crun-state" "$work/results"
chmod 700 "${homes[@]}"
cleanup() {
    local status=$?
    set +e
    for i in 0 1; do
        MSB_HOME=${homes[i]} "${builds[i]}" server stop >/dev/null 2>&1
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

names=("before" "after" "crun")
for i in 0 1; do
    say "${names[i]}: ${builds[i]} (MSB_HOME=${homes[i]})"
    # The first run builds the busybox root; the warm supervisors spawned after it boot ahead.
    MSB_HOME=${homes[i]} "${builds[i]}" run -- true </dev/null \
        || die "${builds[i]} run -- true failed (see ${homes[i]}/msbd.log; BENCH_KEEP=1 keeps it)"
done
sleep 2
make_bundle "$work/bundle" "${homes[0]}/images/busybox/rootfs" true
in_crun_ns "$CRUN" --root "$work/crun-state" run -b "$work/bundle" ab </dev/null \
    || die "crun run failed"

q() { printf '%q ' "$@"; }
cmds=(
    "$(q env "MSB_HOME=${homes[0]}" "$before" run -- true)"
    "$(q env "MSB_HOME=${homes[1]}" "$after" run -- true)"
    "$(q "$CRUN" --root "$work/crun-state" run -b "$work/bundle" ab)"
)

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
for ((round = 1; round <= ROUNDS; round++)); do
    args=()
    order=(0 1 2)
    ((round % 2)) || order=(2 1 0)
    for i in "${order[@]}"; do args+=(-n "${names[i]}" "${cmds[i]}"); done
    say "  wall round $round/$ROUNDS"
    in_crun_ns hyperfine -N -i --style none --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$work/results/$round.json" "${args[@]}" </dev/null \
        >"$work/results/$round.log" 2>&1 \
        || { cat "$work/results/$round.log" >&2; die "hyperfine failed (round $round)"; }
done

busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; } # user nice system irq softirq
hz=$(getconf CLK_TCK)
cpu_per_run() { # BUILD HOME: ms of the machine's CPU per run, over CPU_RUNS back-to-back runs
    local start end i
    start=$(busy)
    for ((i = 0; i < CPU_RUNS; i++)); do
        MSB_HOME=$2 "$1" run -- true </dev/null >/dev/null 2>&1 || true
    done
    end=$(busy)
    python3 -c "print(f'{($end - $start) * 1000 / $hz / $CPU_RUNS:.1f}')"
}
cpu=([0]="" [1]="")
for ((pair = 1; pair <= PAIRS; pair++)); do
    say "  cpu pair $pair/$PAIRS"
    for i in 0 1; do
        ((pair % 2)) || i=$((1 - i))
        cpu[i]+="$(cpu_per_run "${builds[i]}" "${homes[i]}") "
    done
done
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$work/results" "${cpu[0]}" "${cpu[1]}" <<'EOF'
import glob, json, statistics, sys

results, cpu_before, cpu_after = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
pooled, failed = {}, {}
for path in glob.glob(f"{results}/*.json"):
    for result in json.load(open(path))["results"]:
        name = result["command"]
        times = [t for t, code in zip(result["times"], result["exit_codes"]) if code == 0]
        failed[name] = failed.get(name, 0) + len(result["times"]) - len(times)
        pooled.setdefault(name, []).extend(times)
crun = statistics.median(pooled["crun"])
print(f"\n{'back to back':14}{'median':>10}{'/ crun':>8}{'runs':>6}{'failed':>8}")
for name in ["before", "after", "crun"]:
    median = statistics.median(pooled[name])
    print(f"{name:14}{median * 1000:7.2f} ms{median / crun:7.2f}x{len(pooled[name]):6}{failed[name]:8}")
change = statistics.median(pooled["after"]) / statistics.median(pooled["before"]) - 1
print(f"after against before: {change * 100:+.1f}% wall time per run")
print(f"\nCPU per run (whole machine, ms, {len(cpu_before)} alternating pairs)")
print(f"  before: {' '.join(cpu_before)}  (median {statistics.median(map(float, cpu_before)):.1f})")
print(f"  after:  {' '.join(cpu_after)}  (median {statistics.median(map(float, cpu_after)):.1f})")
EOF
