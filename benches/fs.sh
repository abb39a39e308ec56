#!/usr/bin/env bash
# PassthroughFs throughput against native access and bindfs (issue 12), on one host directory:
# 1 GiB sequential write (dd bs=1M conv=fsync) and creating 10,000 small files, alternated over
# ROUNDS rounds. Reports medians and ratios against the targets; never asserts. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/msb-target}"
MOUNT_BIN="${MSB_FS_MOUNT:-$CARGO_TARGET_DIR/release/msb-fs-mount}"
ROUNDS="${ROUNDS:-3}"
SEQ_MIB="${SEQ_MIB:-1024}"
FILES="${FILES:-10000}"
QUOTA_MIB="${QUOTA_MIB:-4096}"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is missing (apt-get install python3)" >&2; exit 1; }
if ! command -v bindfs >/dev/null; then
    echo "bindfs is missing; installing it (apt-get install bindfs)..." >&2
    apt-get install -y bindfs >/dev/null || echo "could not install bindfs; its rows are skipped" >&2
fi
if [ -z "${MSB_FS_MOUNT:-}" ]; then
    cargo build -q -p msb-fs --release --bin msb-fs-mount
fi

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/msb-fs-bench.XXXXXX")
data="$work/data"
mkdir -p "$data" "$work/bindfs" "$work/msbfs"
mount_pid=
cleanup() {
    umount -l "$work/bindfs" 2>/dev/null || true
    if [ -n "$mount_pid" ]; then kill -TERM "$mount_pid" 2>/dev/null || true; wait "$mount_pid" 2>/dev/null || true; fi
    umount -l "$work/msbfs" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

targets=(native)
if command -v bindfs >/dev/null && bindfs -o big_writes "$data" "$work/bindfs" 2>/dev/null; then
    targets+=(bindfs)
fi
"$MOUNT_BIN" "$data" "$work/msbfs" --quota-mib "$QUOTA_MIB" >"$work/msbfs.log" 2>&1 &
mount_pid=$!
for _ in $(seq 1 100); do
    grep -q "fuse.msb-fs" /proc/mounts && grep -q " $work/msbfs " /proc/mounts && break
    sleep 0.05
done
grep -q " $work/msbfs " /proc/mounts || { echo "msb-fs did not mount:" >&2; cat "$work/msbfs.log" >&2; exit 1; }
targets+=(msb-fs)

dir_of() {
    case "$1" in
        native) echo "$data" ;;
        bindfs) echo "$work/bindfs" ;;
        msb-fs) echo "$work/msbfs" ;;
    esac
}

now() { date +%s.%N; }

# MB/s (10^6 bytes per second) of a SEQ_MIB MiB dd with conv=fsync into $1.
seq_write() {
    local file="$1/seq.bin" start end
    sync
    start=$(now)
    dd if=/dev/zero of="$file" bs=1M count="$SEQ_MIB" conv=fsync status=none
    end=$(now)
    rm -f "$file"
    python3 -c "print(f'{$SEQ_MIB * 1048576 / ($end - $start) / 1e6:.1f}')"
}

# Files per second creating FILES 1 KiB files (open, write, close) in a fresh directory in $1.
small_files() {
    local dir="$1/small"
    mkdir "$dir"
    sync
    python3 - "$dir" "$FILES" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
block = b"x" * 1024
t = time.monotonic()
for i in range(n):
    fd = os.open(f"{d}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, block)
    os.close(fd)
print(f"{n / (time.monotonic() - t):.0f}")
PY
    rm -rf "$dir"
}

declare -A seq small
for round in $(seq 1 "$ROUNDS"); do
    order=("${targets[@]}")
    if (( round % 2 == 0 )); then
        order=(); for (( i=${#targets[@]}-1; i>=0; i-- )); do order+=("${targets[$i]}"); done
    fi
    for t in "${order[@]}"; do
        s=$(seq_write "$(dir_of "$t")")
        f=$(small_files "$(dir_of "$t")")
        seq[$t]+="$s "
        small[$t]+="$f "
        echo "round $round/$ROUNDS $t: seq write $s MB/s, small files $f files/s" >&2
    done
done

kill -TERM "$mount_pid"; wait "$mount_pid" || true; mount_pid=
python3 - "$ROUNDS" "$SEQ_MIB" "$FILES" "$QUOTA_MIB" \
    "native=${seq[native]}|${small[native]}" \
    "bindfs=${seq[bindfs]:-}|${small[bindfs]:-}" \
    "msb-fs=${seq[msb-fs]}|${small[msb-fs]}" <<'PY'
import statistics, sys
rounds, seq_mib, files, quota = sys.argv[1:5]
rows = {}
for arg in sys.argv[5:]:
    name, values = arg.split("=", 1)
    s, f = values.split("|")
    if s.strip():
        rows[name] = ([float(x) for x in s.split()], [float(x) for x in f.split()])
print(f"{rounds} rounds; sequential write {seq_mib} MiB (dd bs=1M conv=fsync); {files} files of 1 KiB; msb-fs quota {quota} MiB")
print(f"{'':8} {'seq write MB/s':>16} {'(min..max)':>16} {'small files/s':>14} {'(min..max)':>16}")
med = {}
for name, (s, f) in rows.items():
    med[name] = (statistics.median(s), statistics.median(f))
    print(f"{name:8} {med[name][0]:16.0f} {f'{min(s):.0f}..{max(s):.0f}':>16} {med[name][1]:14.0f} {f'{min(f):.0f}..{max(f):.0f}':>16}")
def check(label, ratio, target):
    print(f"  {label:32} {ratio:5.2f}x  target >= {target}x: {'met' if ratio >= target else 'NOT met'}")
print("ratios of the medians")
m = med["msb-fs"]
if "bindfs" in med:
    check("seq write msb-fs / bindfs", m[0] / med["bindfs"][0], 2)
check("seq write msb-fs / native", m[0] / med["native"][0], 0.5)
if "bindfs" in med:
    check("small files msb-fs / bindfs", m[1] / med["bindfs"][1], 1)
check("small files msb-fs / native", m[1] / med["native"][1], 0)
PY
