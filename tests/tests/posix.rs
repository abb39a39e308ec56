//! POSIX file-system semantics inside a real sandbox: `tests/posix/fscheck.c` (70 checks in the
//! spirit of pjdfstest: create, write, holes, truncate, modes, owners, times, links, symbolic
//! links, rename and renameat2, directories, fifos, permissions as uid 1000, xattrs) run as the
//! sandbox's root over each file system a workload writes to: a quota'd directory served by
//! msb's file server (PassthroughFs), the writable root (overlay on the root disk) and `/.msb`.
//! The counts are committed in `docs/posix.md`.

use msb_e2e::{build_static_c, require_root, TestHome};

#[test]
fn posix_semantics_hold_on_every_writable_file_system() {
    if !require_root() {
        return;
    }
    let tools = tempfile::tempdir().unwrap();
    let Some(binary) = build_static_c("posix/fscheck.c", tools.path()) else {
        return;
    };
    let home = TestHome::new();
    let data = tempfile::tempdir().unwrap();
    let bind = format!("{}:/data,quota=64", data.path().display());
    let tool = format!("{}:/t/fscheck:ro", binary.display());
    home.ok(&[
        "run", "-d", "-n", "posix", "-v", &bind, "-v", &tool, "--", "sleep", "600",
    ]);
    for (where_, dir) in [
        ("a quota'd directory (PassthroughFs)", "/data"),
        ("the writable root (overlay on the root disk)", "/tmp"),
        ("/.msb (PassthroughFs, 16 MiB budget)", "/.msb"),
    ] {
        let run = home.msb(&["exec", "posix", "--", "/t/fscheck", dir]);
        let failed: Vec<&str> = run
            .stdout
            .lines()
            .filter(|l| l.starts_with("not ok"))
            .collect();
        assert!(
            run.code == 0 && failed.is_empty(),
            "{where_}: {failed:#?}\n{}",
            run.stderr
        );
        assert!(
            run.stdout.contains("# 70 checks, 0 failed"),
            "{where_}: {}",
            run.stdout
        );
    }
    home.ok(&["rm", "-f", "posix"]);
}
