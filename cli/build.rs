//! With `-C target-feature=+crt-static` (how scripts/lib.sh builds the client), rustc links
//! x86_64 glibc binaries as static PIE. `msb` is started for every command, and a static PIE
//! still relocates itself at start (about 16,000 relocations and 200 page faults, a millisecond
//! of each `msb` call on this kind of host), so ask the linker for a plain static executable
//! with a fixed load address instead, as runtime/agentd does for the agent.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_env == "gnu" && features.split(',').any(|feature| feature == "crt-static") {
        // `-static` after rustc's `-static-pie` selects crt1.o/crtbeginT.o and a non-PIE link;
        // `-no-pie` alone would leave a PT_INTERP behind.
        println!("cargo:rustc-link-arg-bin=msb=-no-pie");
        println!("cargo:rustc-link-arg-bin=msb=-static");
    }
}
