//! The agent is meant to be a plain static executable (fixed load address, no self-relocation,
//! no interpreter): with `crt-static`, ask the linker for one (see
//! build-support/static_link.rs).

include!("../../build-support/static_link.rs");

fn main() {
    println!("cargo:rerun-if-changed=../../build-support/static_link.rs");
    link_static_executables(&["msb-agentd"]);
}
