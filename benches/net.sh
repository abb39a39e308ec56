#!/usr/bin/env bash
# msb-net against slirp4netns, pasta and a veth pair (issue 8): iperf3 TCP throughput (one
# stream, DURATION seconds, from inside a network namespace to a server on the host) and ping
# RTT from the namespace to the host, alternated over ROUNDS rounds; medians and ratios. Never
# asserts. Run as root. All traffic stays on this machine: the servers listen on the host's
# loopback (reached through each stack's host alias) or on the host end of the veth pair.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/msb-target}"
NET_BIN="${MSB_NET_BIN:-$CARGO_TARGET_DIR/release/examples/netns}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
PINGS="${PINGS:-50}"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for tool in ip iperf3 ping python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install iproute2 iperf3 iputils-ping python3)" >&2; exit 1; }
done
if [ -z "${MSB_NET_BIN:-}" ]; then
    cargo build -q --release -p msb-net --example netns
fi

tag="msbb$$"
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/msb-net-bench.XXXXXX")
pids=()
ping_range=$(cat /proc/sys/net/ipv4/ping_group_range)
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in m s p v; do ip netns del "$tag$ns" 2>/dev/null || true; done
    ip link del "${tag}h" 2>/dev/null || true
    echo "$ping_range" > /proc/sys/net/ipv4/ping_group_range
    [ -n "${BENCH_KEEP:-}" ] && echo "raw results kept in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
# pasta (and msb-net's relay to the host) answer pings through unprivileged ICMP sockets; allow
# root's group for the duration of the run (restored on exit).
echo "0 0" > /proc/sys/net/ipv4/ping_group_range

iperf_port=$((20000 + $$ % 20000))
iperf3 -s -B 127.0.0.1 -p "$iperf_port" >"$work/iperf-lo.log" 2>&1 &
pids+=($!)

targets=()
declare -A addr port pid
# msb-net: the host alias 172.30.0.254 leads to the host's loopback when allowed.
ip netns add "${tag}m"
mkfifo "$work/msb.stdin"
"$NET_BIN" "${tag}m" --rule allow@host <"$work/msb.stdin" >"$work/msb.out" 2>"$work/msb.err" &
pids+=($!)
pid[msb-net]=$!
exec 9>"$work/msb.stdin"
# The example creates and configures eth0 (172.30.0.2/24, MTU 65520, default route) itself.
for _ in $(seq 1 100); do grep -q ready "$work/msb.out" && break; sleep 0.05; done
targets+=(msb-net) addr[msb-net]=172.30.0.254 port[msb-net]=$iperf_port

if command -v slirp4netns >/dev/null; then
    ip netns add "${tag}s"
    slirp4netns --configure --mtu=65520 --netns-type=path "/run/netns/${tag}s" tap0 >"$work/slirp.log" 2>&1 &
    pids+=($!)
    pid[slirp4netns]=$!
    for _ in $(seq 1 100); do ip -n "${tag}s" -br addr show tap0 2>/dev/null | grep -q 10.0.2.100 && break; sleep 0.05; done
    targets+=(slirp4netns) addr[slirp4netns]=10.0.2.2 port[slirp4netns]=$iperf_port
else
    echo "slirp4netns is missing (apt-get install slirp4netns); its row is skipped" >&2
fi

gateway=$(ip -4 route show default | awk '{print $3; exit}')
if command -v pasta >/dev/null && [ -n "$gateway" ]; then
    ip netns add "${tag}p"
    # The host's gateway address inside the namespace is mapped to the host's loopback.
    if pasta --config-net -4 --runas 0 --netns "${tag}p" -P "$work/pasta.pid" >"$work/pasta.log" 2>&1; then
        pids+=("$(cat "$work/pasta.pid")")
        pid[pasta]=$(cat "$work/pasta.pid")
        targets+=(pasta) addr[pasta]=$gateway port[pasta]=$iperf_port
    else
        echo "pasta did not start (see $work/pasta.log); its row is skipped" >&2
    fi
else
    echo "pasta is missing (apt-get install passt) or the host has no default route; its row is skipped" >&2
fi

# The kernel's ceiling: a veth pair, the server on its host end.
ip netns add "${tag}v"
ip link add "${tag}h" type veth peer name eth0 netns "${tag}v"
ip addr add 10.213.0.1/30 dev "${tag}h"
ip link set "${tag}h" up
ip -n "${tag}v" addr add 10.213.0.2/30 dev eth0
ip -n "${tag}v" link set eth0 up
ip -n "${tag}v" link set lo up
iperf3 -s -B 10.213.0.1 -p $((iperf_port + 1)) >"$work/iperf-veth.log" 2>&1 &
pids+=($!)
targets+=(veth) addr[veth]=10.213.0.1 port[veth]=$((iperf_port + 1))
sleep 0.5

# CPU time (clock ticks, all threads) a stack's process has used; 0 for the kernel's veth.
cpu_ticks() {
    if [ -n "${pid[$1]:-}" ]; then awk '{print $14 + $15}' "/proc/${pid[$1]}/stat"; else echo 0; fi
}

ns_of() {
    case "$1" in
        msb-net) echo "${tag}m" ;; slirp4netns) echo "${tag}s" ;; pasta) echo "${tag}p" ;; veth) echo "${tag}v" ;;
    esac
}

echo "rounds=$ROUNDS duration=${DURATION}s pings=$PINGS targets: ${targets[*]}" >&2
for round in $(seq 1 "$ROUNDS"); do
    order=("${targets[@]}")
    if [ $((round % 2)) = 0 ]; then
        order=($(printf '%s\n' "${targets[@]}" | tac))
    fi
    for t in "${order[@]}"; do
        ns=$(ns_of "$t")
        cpu_before=$(cpu_ticks "$t")
        gbps=$(ip netns exec "$ns" timeout $((DURATION + 20)) iperf3 -c "${addr[$t]}" -p "${port[$t]}" -t "$DURATION" -J 2>/dev/null \
            | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)' 2>/dev/null || echo nan)
        cpu_after=$(cpu_ticks "$t")
        echo "$gbps $((cpu_after - cpu_before))" >>"$work/$t.gbps"
        ip netns exec "$ns" ping -c "$PINGS" -i 0.02 -W 1 "${addr[$t]}" 2>/dev/null \
            | grep -o 'time=[0-9.]*' | cut -d= -f2 >"$work/$t.round" || true
        cat "$work/$t.round" >>"$work/$t.rtt"
        rtt=$(sort -n "$work/$t.round" | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)] * 1000; else print "n/a"}')
        echo "round $round $t: ${gbps} Gbit/s, ping median ${rtt} us" >&2
    done
done
exec 9>&-

python3 - "$work" "$(getconf CLK_TCK)" "$DURATION" "${targets[@]}" <<'EOF'
import math, statistics, sys
work, hz, duration, targets = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
def median(values):
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")
rows = {}
for t in targets:
    runs = [line.split() for line in open(f"{work}/{t}.gbps")]
    gbps = median([float(r[0]) for r in runs])
    # CPU seconds the stack's process spent per GB moved (the kernel's share is not counted).
    cpu = median([int(r[1]) / hz / (float(r[0]) * duration / 8) for r in runs if float(r[0]) > 0])
    try:
        rtt = median([float(v) * 1000 for v in open(f"{work}/{t}.rtt").read().split()])
    except FileNotFoundError:
        rtt = float("nan")
    rows[t] = (gbps, cpu, rtt)
base_gbps, _, base_rtt = rows["msb-net"]
print(f"{'stack':<12} {'TCP Gbit/s':>10} {'msb-net/x':>10} {'CPU s/GB':>9} {'ping us':>8} {'x/msb-net':>10}")
for t, (gbps, cpu, rtt) in rows.items():
    cpu_text = f"{cpu:>9.2f}" if t != "veth" else f"{'kernel':>9}"
    print(f"{t:<12} {gbps:>10.2f} {base_gbps / gbps:>10.2f} {cpu_text} {rtt:>8.0f} {rtt / base_rtt:>10.2f}")
EOF
