// Shared by the build scripts of the crates whose binaries scripts/lib.sh links statically
// (`include!`d, not a crate: three build scripts need these few lines).
//
// With `-C target-feature=+crt-static`, rustc links x86_64 glibc binaries as static PIE. A static
// PIE still relocates itself at every start (for `msb`, about 16,000 relocations and 200 page
// faults, a millisecond of each call on this kind of host), so ask the linker for a plain static
// executable with a fixed load address instead.

/// Links `bins` as plain static executables when the build is `crt-static`.
fn link_static_executables(bins: &[&str]) {
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_env == "gnu" && features.split(',').any(|feature| feature == "crt-static") {
        for bin in bins {
            // `-static` after rustc's `-static-pie` selects crt1.o/crtbeginT.o and a non-PIE
            // link; `-no-pie` alone would leave a PT_INTERP behind.
            println!("cargo:rustc-link-arg-bin={bin}=-no-pie");
            println!("cargo:rustc-link-arg-bin={bin}=-static");
        }
    }
}
