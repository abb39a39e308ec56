# Shared by scripts/setup, scripts/test and scripts/bench. Sourced, not run.

# One fixed target directory outside the clone, so every build (set-up, tests, CI) shares it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/msb-target}"
# Where msb is installed; also where the build links DuckDB from (see .cargo/config.toml).
MSB_PREFIX=/usr/local/lib/msb
# DuckDB 1.5.5 as a prebuilt shared library, carried by this npm package (docs/adr/001).
DUCKDB_NPM_PACKAGE="@duckdb/node-bindings-linux-x64@1.5.5-r.5"

# schemathesis, which tests/contract/fuzz.sh runs against a real msbd, pinned, in a virtualenv
# outside the clone (PyPI only).
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=/var/tmp/msb-schemathesis

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then exec sudo -E "$0" "$@"; fi
        echo "run this as root" >&2
        exit 1
    fi
}

ensure_cargo() {
    if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
}

install_duckdb() {
    if [ -f "$MSB_PREFIX/libduckdb.so" ] && [ -f "$MSB_PREFIX/.duckdb-version" ] \
        && [ "$(cat "$MSB_PREFIX/.duckdb-version")" = "$DUCKDB_NPM_PACKAGE" ]; then
        return
    fi
    log "DuckDB library from npm ($DUCKDB_NPM_PACKAGE)"
    command -v npm >/dev/null || apt-get install -y -qq npm >/dev/null
    local work
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent "$DUCKDB_NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz package/libduckdb.so)
    install -d "$MSB_PREFIX"
    install -m 0755 "$work/package/libduckdb.so" "$MSB_PREFIX/libduckdb.so"
    echo "$DUCKDB_NPM_PACKAGE" > "$MSB_PREFIX/.duckdb-version"
    rm -rf "$work"
}

# The static executables, built for the explicit target so that they stay apart from
# target/release (where cargo keeps the dynamic builds the crates' own tests use): the agent,
# which runs inside sandboxes whose root may have no libc, and `msb` and `msb-supervisor`, started
# for every command and every sandbox, where a static executable at a fixed address saves the
# dynamic loader's work (about a millisecond of CPU per start here; see cli/build.rs).
STATIC_DIR="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
AGENT_STATIC="$STATIC_DIR/msb-agentd"
# Where the four binaries are gathered (hard links), as they are installed: msb, msbd,
# msb-supervisor and msb-agentd side by side, each finding the others beside itself.
BIN_DIR="$CARGO_TARGET_DIR/msb-bin"

# Builds the workspace (release), the static executables, and gathers them in $BIN_DIR.
build_all() {
    ensure_cargo
    log "building msb (release, target dir $CARGO_TARGET_DIR)"
    cargo build --release --workspace --bins
    log "building the static msb, msb-supervisor and msb-agentd"
    # `msb` (crate msb-cli: the API contract and the protocol, no runtime, no DuckDB, no
    # libseccomp; cli/tests/dependencies.rs) links statically; the supervisor links libseccomp
    # (through msb-namespace) from its archive, hence the LIBSECCOMP_* variables.
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
        RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --target x86_64-unknown-linux-gnu --no-default-features \
        -p msb-cli --bin msb -p msb-runtime --bin msb-supervisor
    # The agent on its own: built with the others, it would get msb-protocol's `tokio` feature
    # (features are unified within one build) and carry async framing it never uses.
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --target x86_64-unknown-linux-gnu -p msb-agentd --bin msb-agentd
    install -d "$BIN_DIR"
    ln -f "$STATIC_DIR/msb" "$STATIC_DIR/msb-supervisor" "$AGENT_STATIC" \
        "$CARGO_TARGET_DIR/release/msbd" "$BIN_DIR/"
}

# Installs schemathesis into $SCHEMATHESIS_VENV unless the pinned version is there.
install_schemathesis() {
    if "$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; then
        return
    fi
    log "schemathesis $SCHEMATHESIS_VERSION (PyPI) into $SCHEMATHESIS_VENV"
    python3 -m venv "$SCHEMATHESIS_VENV" 2>/dev/null \
        || { apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$SCHEMATHESIS_VENV"; }
    "$SCHEMATHESIS_VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
}
