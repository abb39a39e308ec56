#!/usr/bin/env bash
# Start and exec latency of msb against crun and bwrap, side by side in one run, on the same
# busybox root filesystem (a copy of the one msb builds at $MSB_HOME/images/busybox/rootfs):
#
#   run:  `msb run -- true`         vs `crun run` (bundle running `true`) vs `bwrap ... true`,
#         back to back (each run overlaps what the one before left to do in the background)
#         and `msb run -- true` on a second msbd with no warm supervisors (MSB_WARM_SUPERVISORS=0,
#         "msb run cold": every start spawns its supervisor and migrates into fresh cgroups; run
#         through `env`, which adds well under a millisecond)
#   spaced: `msb run -- true`       vs `crun run`, SPACING seconds apart (hyperfine --prepare
#         sleep): the latency of a start on a machine that is not already busy with starts
#   exec: `msb exec bench -- true`  vs `crun exec <running container> true`
#         (msbd and one `sleep` sandbox kept warm; one `sleep` crun container kept running)
#
# Each part is measured in ROUNDS hyperfine invocations that hold all its commands, in alternating
# order, so that the machine's noise falls on every command alike; the raw times of all rounds are
# pooled into a median and p90 per command (runs that exit non-zero are counted, not timed).
# Prints the ratios msb/crun (and msb/bwrap for run) against the targets (run <= 1.5x crun,
# exec <= 1.5x crun exec); reports, never asserts.
#
# Usage (as root):  benches/lifecycle.sh
# Environment:
#   MSB_BIN       msb binary (default /usr/local/bin/msb, else $CARGO_TARGET_DIR/msb-bin/msb)
#   MSB_AGENTD    agent binary (default: the one beside msbd; for target/release, the static build)
#   ROUNDS        alternating rounds per part (default 6)
#   RUNS          timed runs per command and round for run (default 20)
#   EXEC_RUNS     timed runs per command and round for exec (default 40)
#   SPACED_RUNS   timed runs per command and round for the spaced part (default 10)
#   SPACING       seconds between two runs of the spaced part (default 0.3)
#   WARMUP        untimed runs per command and round (default 3)
#   BENCH_KEEP=1  keep the work directory (hyperfine JSON in results/, MSB_HOME, bundles)
set -euo pipefail

ROUNDS=${ROUNDS:-6}
RUNS=${RUNS:-20}
EXEC_RUNS=${EXEC_RUNS:-40}
SPACED_RUNS=${SPACED_RUNS:-10}
SPACING=${SPACING:-0.3}
WARMUP=${WARMUP:-3}

say() { printf '%s\n' "$*" >&2; }
die() { say "lifecycle.sh: $*"; exit 1; }

if [ "$(id -u)" != 0 ]; then
    die "must run as root (msb's namespace backend, crun and bwrap --unshare-all need it): sudo $0"
fi

missing=()
need() { command -v "$1" >/dev/null || missing+=("$1 (Debian package: $2)"); }
need hyperfine hyperfine
need crun crun
need bwrap bubblewrap
need python3 python3
need unshare util-linux
need mountpoint util-linux
if [ "${#missing[@]}" -gt 0 ]; then
    say "lifecycle.sh: missing tools:"
    printf '  %s\n' "${missing[@]}" >&2
    die "install them with: apt-get install hyperfine crun bubblewrap python3 util-linux"
fi
CRUN=$(command -v crun)
BWRAP=$(command -v bwrap)

# --- msb binaries -------------------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-/var/tmp/msb-target}
if [ -n "${MSB_BIN:-}" ]; then
    MSB=$MSB_BIN
elif [ -x /usr/local/bin/msb ]; then
    MSB=/usr/local/bin/msb
else
    MSB=$target_dir/msb-bin/msb
fi
[ -x "$MSB" ] || die "no msb binary at $MSB: build with ./scripts/setup, or set MSB_BIN"
MSB=$(readlink -f "$MSB")
# msbd looks for msb-agentd beside itself. In a target dir that is a dynamic build (for the
# agent's own tests) that cannot run in the busybox root; the static one is built apart.
if [ -z "${MSB_AGENTD:-}" ] \
    && { [ "$(dirname "$MSB")" = "$(readlink -f "$target_dir")/release" ] \
        || [ ! -x "$(dirname "$MSB")/msb-agentd" ]; }; then
    static_agent=$target_dir/x86_64-unknown-linux-gnu/release/msb-agentd
    [ -x "$static_agent" ] || die "no static msb-agentd at $static_agent: set MSB_AGENTD"
    export MSB_AGENTD=$static_agent
fi

# --- crun on a hybrid cgroup host: in_crun_ns ---------------------------------------------------
# shellcheck source=benches/crun-ns.sh
source "$(dirname "$0")/crun-ns.sh"

# --- work directory and cleanup -----------------------------------------------------------------
work=$(mktemp -d /tmp/msb-bench.XXXXXX)
export MSB_HOME=$work/msb-home
crun_root=$work/crun-state
results=$work/results
cold_home=$work/msb-cold
mkdir -p "$MSB_HOME" "$crun_root" "$results"
msb_started=0
crun_started=0

cleanup() {
    local status=$?
    set +e
    if [ "$crun_started" = 1 ]; then
        in_crun_ns "$CRUN" --root "$crun_root" kill exec-target KILL >/dev/null 2>&1
        in_crun_ns "$CRUN" --root "$crun_root" delete -f exec-target >/dev/null 2>&1
    fi
    if [ "$msb_started" = 1 ]; then
        "$MSB" rm -f bench >/dev/null 2>&1
        "$MSB" server stop >/dev/null 2>&1
        MSB_HOME=$cold_home "$MSB" server stop >/dev/null 2>&1
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        say "kept $work (hyperfine JSON in $results)"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- msb: daemon, busybox root, warm sandbox ----------------------------------------------------
say "msb: $MSB (MSB_HOME=$MSB_HOME${MSB_AGENTD:+, MSB_AGENTD=$MSB_AGENTD})"
msb_started=1
"$MSB" server start >/dev/null
# The first run also builds the busybox root. One retry: runs and execs with stdin at /dev/null
# occasionally fail with "the session ended before the process exited" (the summary counts them).
"$MSB" run -- true </dev/null || "$MSB" run -- true </dev/null \
    || die "msb run -- true failed (see $MSB_HOME/msbd.log; BENCH_KEEP=1 keeps it)"
# The cold msbd: same binaries, no warm supervisors.
MSB_HOME=$cold_home MSB_WARM_SUPERVISORS=0 "$MSB" server start >/dev/null
MSB_HOME=$cold_home "$MSB" run -- true </dev/null || die "msb run -- true (cold msbd) failed"
msb_rootfs=$MSB_HOME/images/busybox/rootfs
[ -e "$msb_rootfs/bin/true" ] || die "no busybox root at $msb_rootfs"
"$MSB" run -n bench -d -- sleep 100000 >/dev/null
"$MSB" exec bench -- true </dev/null || "$MSB" exec bench -- true </dev/null \
    || die "msb exec bench -- true failed"

# --- the shared root and the crun bundles -------------------------------------------------------
rootfs=$work/rootfs
cp -a "$msb_rootfs" "$rootfs"
make_bundle "$work/bundle-run" "$rootfs" true
make_bundle "$work/bundle-exec" "$rootfs" sleep 100000

crun_started=1
in_crun_ns "$CRUN" --root "$crun_root" run -d -b "$work/bundle-exec" exec-target \
    </dev/null >/dev/null 2>&1 || die "crun run -d (the exec target) failed"
in_crun_ns "$CRUN" --root "$crun_root" exec exec-target true || die "crun exec failed"
in_crun_ns "$CRUN" --root "$crun_root" run -b "$work/bundle-run" bench-run </dev/null \
    || die "crun run failed"
"$BWRAP" --ro-bind "$rootfs" / --proc /proc --dev /dev --unshare-all true || die "bwrap failed"

# --- measurement --------------------------------------------------------------------------------
q() { printf '%q ' "$@"; } # one hyperfine -N command line
declare -A cmd=(
    ["msb run"]=$(q "$MSB" run -- true)
    ["msb run spaced"]=$(q "$MSB" run -- true)
    ["crun run spaced"]=$(q "$CRUN" --root "$crun_root" run -b "$work/bundle-run" bench-run)
    ["msb run cold"]=$(q env "MSB_HOME=$cold_home" "$MSB" run -- true)
    ["crun run"]=$(q "$CRUN" --root "$crun_root" run -b "$work/bundle-run" bench-run)
    ["bwrap run"]=$(q "$BWRAP" --ro-bind "$rootfs" / --proc /proc --dev /dev --unshare-all true)
    ["msb exec"]=$(q "$MSB" exec bench -- true)
    ["crun exec"]=$(q "$CRUN" --root "$crun_root" exec exec-target true)
)

measure() { # PART RUNS NAME...: ROUNDS hyperfine invocations, order reversed every other round
    local part=$1 runs=$2 round name prepare=()
    shift 2
    # The spaced part leaves each run's background work (msb's clean-up of the run before and
    # the warm supervisor's preparation of the next) the time to finish before the next run.
    [ "$part" = spaced ] && prepare=(--prepare "sleep $SPACING")
    local names=("$@")
    for ((round = 1; round <= ROUNDS; round++)); do
        local order=() args=()
        if ((round % 2)); then
            order=("${names[@]}")
        else
            for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[i]}"); done
        fi
        for name in "${order[@]}"; do args+=(-n "$name" "${cmd[$name]}"); done
        say "  $part round $round/$ROUNDS ($(IFS=,; echo "${order[*]}"))"
        # -i: a failed run must not abort the whole benchmark; the summary drops and counts it.
        # hyperfine's warnings (outliers, ignored exit codes) go to a log, shown only on error.
        local log=$results/$part-$round.log
        in_crun_ns hyperfine -N -i --style none --warmup "$WARMUP" --runs "$runs" "${prepare[@]}" \
            --export-json "$results/$part-$round.json" "${args[@]}" </dev/null >"$log" 2>&1 \
            || { cat "$log" >&2; die "hyperfine failed ($part round $round)"; }
    done
}

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
started=$SECONDS
measure run "$RUNS" "msb run" "msb run cold" "crun run" "bwrap run"
measure spaced "$SPACED_RUNS" "msb run spaced" "crun run spaced"
measure exec "$EXEC_RUNS" "msb exec" "crun exec"
say "measured in $((SECONDS - started)) s; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- dying memory cgroups -----------------------------------------------------------------------
# A removed memory cgroup lives on ("dying") while pages or kernel objects charged to it stay
# cached. /proc/cgroups counts live and dying ones; the directories count the live ones. After
# dropping the caches, DYING_RUNS runs of each command: how many dying cgroups were added.
dying() { awk '$1 == "memory" { print $3 }' /proc/cgroups; }
live() { # live memory cgroups: directories of the memory hierarchy (v1) or of the v2 tree
    local m
    m=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ { print $2; exit }' /proc/mounts)
    find "${m:-/sys/fs/cgroup}" -type d | wc -l
}
DYING_RUNS=${DYING_RUNS:-100}
for name in "msb run" "crun run"; do
    sync
    echo 3 >/proc/sys/vm/drop_caches
    sleep 1
    before=$(( $(dying) - $(live) ))
    for ((i = 0; i < DYING_RUNS; i++)); do
        eval "in_crun_ns ${cmd[$name]}" </dev/null >/dev/null 2>&1 || true
    done
    sleep 2
    after=$(( $(dying) - $(live) ))
    printf '%-10s %d runs left %d dying memory cgroups\n' "$name:" "$DYING_RUNS" $((after - before)) \
        >>"$results/dying.txt"
done

# --- summary ------------------------------------------------------------------------------------
python3 - "$results" <<'EOF'
import glob, json, statistics, sys

results = sys.argv[1]
pooled = {}  # command name -> successful run times (s), all rounds
failed = {}  # command name -> runs that exited non-zero (left out of the statistics)
per_round = {}  # (part, round) -> {command name: median (s)}
for path in sorted(glob.glob(f"{results}/*.json")):
    part, round_ = path.rsplit("/", 1)[1][: -len(".json")].split("-")
    for result in json.load(open(path))["results"]:
        name = result["command"]
        times = [t for t, code in zip(result["times"], result["exit_codes"]) if code == 0]
        failed[name] = failed.get(name, 0) + len(result["times"]) - len(times)
        pooled.setdefault(name, []).extend(times)
        if times:
            per_round.setdefault((part, round_), {})[name] = statistics.median(times)

def p90(times):
    times = sorted(times)
    return times[round(0.9 * (len(times) - 1))]

print(f"\n{'':16}{'median':>10}{'p90':>10}{'runs':>6}{'failed':>8}")
for name in ["msb run", "msb run cold", "crun run", "bwrap run", "msb run spaced",
             "crun run spaced", "msb exec", "crun exec"]:
    times = pooled.get(name, [])
    if not times:
        print(f"{name:16}{'-':>10}{'-':>10}{0:6}{failed.get(name, 0):8}")
        continue
    median_ms, p90_ms = statistics.median(times) * 1000, p90(times) * 1000
    print(f"{name:16}{median_ms:7.1f} ms{p90_ms:7.1f} ms{len(times):6}{failed[name]:8}")

def ratio(part, a, b, target=None):
    if not pooled.get(a) or not pooled.get(b):
        print(f"  {a} / {b}: no data")
        return
    value = statistics.median(pooled[a]) / statistics.median(pooled[b])
    each = sorted(r[a] / r[b] for (p, _), r in per_round.items() if p == part and a in r and b in r)
    line = f"  {a:14} / {b:15} {value:6.2f}x  (rounds {each[0]:.2f}x .. {each[-1]:.2f}x)"
    if target is not None:
        line += f"  target <= {target}x: {'met' if value <= target else 'NOT met'}"
    print(line)

print("\nratios of the medians")
ratio("run", "msb run", "crun run", 1.5)
ratio("run", "msb run", "bwrap run")
ratio("run", "msb run cold", "crun run")
ratio("spaced", "msb run spaced", "crun run spaced", 1.5)
ratio("exec", "msb exec", "crun exec", 1.5)
print("\nearlier on this kind of machine: crun run ~10 ms, bwrap ~2.5 ms, crun exec ~5 ms")
print()
print(open(f"{sys.argv[1]}/dying.txt").read(), end="")
EOF
