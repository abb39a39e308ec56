# Shared by the benchmarks that run crun (sourced, not run): in_crun_ns and make_bundle.

# --- crun on a hybrid cgroup host ---------------------------------------------------------------
# crun 1.8 refuses hosts whose controllers are on cgroup v1 but that also mount a cgroup2 tree at
# /sys/fs/cgroup/unified ("cgroups in hybrid mode not supported"). Every crun call therefore runs
# in a private mount namespace without that mount (the host keeps it). The timed hyperfine
# invocations run whole inside such a namespace, so no crun measurement pays for unshare; msb's
# CLI is only a client of a daemon started outside it, and bwrap builds its own namespaces.
in_crun_ns() {
    if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null \
        && [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
        unshare -m --propagation private -- \
            sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' in-crun-ns "$@"
    else
        "$@"
    fi
}

# $CRUN: the crun binary.
make_bundle() { # DIR ROOTFS ARG...: an OCI bundle in DIR over ROOTFS (read-only) running ARG...
    local dir=$1 root=$2
    shift 2
    mkdir -p "$dir"
    (cd "$dir" && "$CRUN" spec)
    python3 - "$dir/config.json" "$root" "$@" <<'EOF'
import json, sys
path, rootfs, args = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(path) as f:
    config = json.load(f)
config["root"] = {"path": rootfs, "readonly": True}
config["process"]["args"] = args
config["process"]["terminal"] = False
with open(path, "w") as f:
    json.dump(config, f, indent=1)
EOF
}
