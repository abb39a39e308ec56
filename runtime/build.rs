//! msbd starts a supervisor for every sandbox: scripts/lib.sh builds `msb-supervisor` static,
//! and this makes that a plain static executable (see build-support/static_link.rs).

include!("../build-support/static_link.rs");

fn main() {
    println!("cargo:rerun-if-changed=../build-support/static_link.rs");
    link_static_executables(&["msb-supervisor"]);
}
