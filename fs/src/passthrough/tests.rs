//! The core called directly, without a transport (no root needed).

use super::*;

fn served() -> (tempfile::TempDir, PassthroughFs) {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = PassthroughFs::new(dir.path(), FsConfig::default()).expect("serve");
    (dir, fs)
}

fn me() -> Context {
    // The caller's own ids: no fs id switch is needed for a file it owns.
    Context {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        pid: std::process::id(),
    }
}

#[test]
fn create_write_read_list() {
    let (dir, fs) = served();
    let ctx = me();
    let (entry, handle) = fs
        .create(&ctx, ROOT_INODE, c"f", 0o640, libc::O_RDWR)
        .unwrap();
    assert_eq!(fs.write(handle, 0, b"hello world").unwrap(), 11);
    let mut buf = [0u8; 64];
    assert_eq!(fs.read(handle, 6, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"world");
    fs.release(handle).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"hello world");
    let (st, _) = fs.getattr(&ctx, entry.inode).unwrap();
    assert_eq!(st.st_size, 11);
    assert_eq!(
        st.st_mode & 0o777,
        0o640,
        "the server's umask does not apply"
    );

    let sub = fs.mkdir(&ctx, ROOT_INODE, c"d", 0o755).unwrap();
    fs.symlink(&ctx, c"../f", sub.inode, c"l").unwrap();
    let dh = fs.opendir(&ctx, ROOT_INODE, 0).unwrap();
    let mut seen = Vec::new();
    fs.readdir(&ctx, dh, 0, true, &mut |e| {
        seen.push((
            String::from_utf8_lossy(e.name).into_owned(),
            e.entry.is_some(),
        ));
        true
    })
    .unwrap();
    fs.releasedir(dh).unwrap();
    seen.sort();
    assert_eq!(
        seen,
        [(".", false), ("..", false), ("d", true), ("f", true)]
            .map(|(n, e)| (n.to_string(), e))
            .to_vec()
    );
    let link = fs.lookup(&ctx, sub.inode, c"l").unwrap();
    assert_eq!(fs.readlink(&ctx, link.inode).unwrap(), b"../f");
}

#[test]
fn readdir_resumes_where_the_sink_stopped() {
    let (dir, fs) = served();
    for i in 0..100 {
        std::fs::write(dir.path().join(format!("f{i}")), b"").unwrap();
    }
    let ctx = me();
    let dh = fs.opendir(&ctx, ROOT_INODE, 0).unwrap();
    let mut names = std::collections::BTreeSet::new();
    let mut offset = 0;
    loop {
        let mut batch = 0;
        fs.readdir(&ctx, dh, offset, false, &mut |e| {
            if batch == 7 {
                return false;
            }
            batch += 1;
            assert!(names.insert(e.name.to_vec()), "listed twice");
            offset = e.next_offset;
            true
        })
        .unwrap();
        if batch == 0 {
            break;
        }
    }
    assert_eq!(names.len(), 102);
}

#[test]
fn bad_roots_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
    let err = PassthroughFs::new(&dir.path().join("link"), FsConfig::default()).unwrap_err();
    assert!(matches!(err, FsError::Symlink { .. }), "{err}");
    let err = PassthroughFs::new(&dir.path().join("../x"), FsConfig::default()).unwrap_err();
    assert!(matches!(err, FsError::BadPath { .. }), "{err}");
    let err = PassthroughFs::new(&dir.path().join("missing"), FsConfig::default()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let zero = FsConfig {
        quota_bytes: Some(0),
        ..FsConfig::default()
    };
    assert!(matches!(
        PassthroughFs::new(dir.path(), zero),
        Err(FsError::ZeroQuota)
    ));
}

#[test]
fn names_must_be_one_component() {
    assert_eq!(
        check_name(c"a/b").unwrap_err().raw_os_error(),
        Some(libc::EACCES)
    );
    assert_eq!(
        check_name(c"").unwrap_err().raw_os_error(),
        Some(libc::EACCES)
    );
    assert_eq!(
        check_name(c"..").unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    assert_eq!(
        check_name(c".").unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    check_name(c"...").unwrap();
    check_name(c"a b").unwrap();
}
