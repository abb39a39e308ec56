//! `msb` is started for every command: scripts/lib.sh builds it static, and this makes that a
//! plain static executable (see build-support/static_link.rs).

include!("../build-support/static_link.rs");

fn main() {
    println!("cargo:rerun-if-changed=../build-support/static_link.rs");
    link_static_executables(&["msb"]);
}
