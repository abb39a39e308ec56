//! With `-C target-feature=+crt-static`, rustc links x86_64 glibc binaries as static PIE, which
//! `file` reports as "static-pie linked". The agent is meant to be a plain static executable
//! (fixed load address, no self-relocation, no interpreter), so ask the linker for one.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_env == "gnu" && features.split(',').any(|feature| feature == "crt-static") {
        // `-static` after rustc's `-static-pie` selects crt1.o/crtbeginT.o and a non-PIE link;
        // `-no-pie` alone would leave a PT_INTERP behind.
        println!("cargo:rustc-link-arg-bins=-no-pie");
        println!("cargo:rustc-link-arg-bins=-static");
    }
}
