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

/// With an id shift, a caller reported with a mapped host id acts with its id inside (as an
/// idmapped bind would), owners show mapped, and an id outside the map is `nobody`.
#[test]
fn an_id_shift_acts_with_the_ids_inside_and_shows_owners_mapped() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (acts with other uids)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("roots"), b"x").unwrap();
    std::os::unix::fs::chown(dir.path().join("roots"), Some(0), Some(0)).unwrap();
    std::fs::set_permissions(
        dir.path().join("roots"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let ids = IdShift {
        uid_base: 300_000,
        gid_base: 300_000,
        count: 65_536,
    };
    let fs = PassthroughFs::new(
        dir.path(),
        FsConfig {
            ids: Some(ids),
            ..FsConfig::default()
        },
    )
    .expect("serve");
    // The sandbox's root (host 300000) sees root's file as its own and may open it.
    let root = fs.caller(300_000, 300_000, 1);
    assert_eq!((root.uid, root.gid), (0, 0));
    let entry = fs.lookup(&root, ROOT_INODE, c"roots").unwrap();
    assert_eq!((entry.attr.st_uid, entry.attr.st_gid), (300_000, 300_000));
    let handle = fs.open(&root, entry.inode, libc::O_RDONLY).unwrap();
    fs.release(handle).unwrap();
    // Its uid 1000 creates a file owned by 1000 on disk, shown as 301000.
    let user = fs.caller(301_000, 301_000, 1);
    assert_eq!(user.uid, 1000);
    let err = fs.open(&user, entry.inode, libc::O_RDONLY).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let (made, handle) = fs
        .create(&user, ROOT_INODE, c"mine", 0o644, libc::O_WRONLY)
        .unwrap();
    fs.release(handle).unwrap();
    assert_eq!(made.attr.st_uid, 301_000);
    let on_disk = std::fs::metadata(dir.path().join("mine")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&on_disk), 1000);
    // An id the map does not cover acts as nobody and shows as nobody.
    let stranger = fs.caller(5, 5, 1);
    assert_eq!((stranger.uid, stranger.gid), (OVERFLOW_ID, OVERFLOW_ID));
    // The host's root (msb's set-up, never a sandbox process) acts as itself.
    let host_root = fs.caller(0, 0, 1);
    assert_eq!((host_root.uid, host_root.gid), (0, 0));
    std::os::unix::fs::chown(dir.path().join("mine"), Some(200_000), None).unwrap();
    let (st, _) = fs.getattr(&root, made.inode).unwrap();
    assert_eq!(st.st_uid, OVERFLOW_ID);
    // chown inside to 7 is 7 on disk.
    fs.setattr(
        &root,
        made.inode,
        SetAttr {
            uid: Some(300_007),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let on_disk = std::fs::metadata(dir.path().join("mine")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&on_disk), 7);
}

/// With `owners` (the runtime directory of a sandbox in a user namespace), files are owned by
/// mapped host ids; the namespace's root may give its files to ids of the range and nothing
/// else, and no one else may give files away.
#[test]
fn the_namespace_root_chowns_within_its_range_only() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (acts with other uids)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let range = IdShift {
        uid_base: 310_000,
        gid_base: 310_000,
        count: 65_536,
    };
    std::os::unix::fs::chown(dir.path(), Some(310_000), Some(310_000)).unwrap();
    let fs = PassthroughFs::new(
        dir.path(),
        FsConfig {
            owners: Some(range),
            ..FsConfig::default()
        },
    )
    .expect("serve");
    let root = fs.caller(310_000, 310_000, 1);
    let (made, handle) = fs
        .create(&root, ROOT_INODE, c"f", 0o644, libc::O_WRONLY)
        .unwrap();
    fs.release(handle).unwrap();
    let owner = |name: &str| {
        let meta = std::fs::metadata(dir.path().join(name)).unwrap();
        use std::os::unix::fs::MetadataExt;
        (meta.uid(), meta.gid())
    };
    assert_eq!(owner("f"), (310_000, 310_000));
    let chown = |ctx: &Context, uid: u32, gid: u32| {
        fs.setattr(
            ctx,
            made.inode,
            SetAttr {
                uid: Some(uid),
                gid: Some(gid),
                ..SetAttr::default()
            },
        )
        .map(|_| ())
        .map_err(|e| e.raw_os_error())
    };
    // The sandbox's root gives it to its uid 1000.
    chown(&root, 311_000, 311_000).unwrap();
    assert_eq!(owner("f"), (311_000, 311_000));
    // Not to an id outside its range (the host's root, another sandbox's).
    assert_eq!(chown(&root, 0, 0), Err(Some(libc::EPERM)));
    assert_eq!(chown(&root, 400_000, 310_000), Err(Some(libc::EPERM)));
    // Its uid 1000 may not give its file away (no CAP_CHOWN).
    let user = fs.caller(311_000, 311_000, 1);
    assert_eq!(chown(&user, 310_000, 310_000), Err(Some(libc::EPERM)));
    // A file whose owner the namespace does not map stays out of its root's reach.
    std::os::unix::fs::chown(dir.path().join("f"), Some(0), Some(0)).unwrap();
    assert_eq!(chown(&root, 310_000, 310_000), Err(Some(libc::EPERM)));
    assert_eq!(owner("f"), (0, 0));
}

/// A filesystem mounted below the served directory is out of reach: the server would act
/// there with its own privileges otherwise.
#[test]
fn mounts_below_the_served_directory_are_not_crossed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (mounts a tmpfs)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let below = dir.path().join("below");
    std::fs::create_dir(&below).unwrap();
    std::fs::create_dir(dir.path().join("plain")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &below,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    std::fs::write(below.join("secret"), b"x").unwrap();
    let fs = PassthroughFs::new(dir.path(), FsConfig::default()).expect("serve");
    let ctx = me();
    let err = fs.lookup(&ctx, ROOT_INODE, c"below").unwrap_err();
    nix::mount::umount(&below).unwrap();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    assert!(fs.lookup(&ctx, ROOT_INODE, c"plain").is_ok());
}

/// A hidden directory (msb's home inside a served ancestor) cannot be looked up, so nothing
/// below it is reachable; its siblings are.
#[test]
fn hidden_directories_are_refused_and_their_contents_unreachable() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("cache")).unwrap();
    std::fs::write(home.join("secret"), "x").unwrap();
    std::fs::create_dir(dir.path().join("other")).unwrap();
    let meta = std::fs::metadata(&home).unwrap();
    let fs = PassthroughFs::new(
        dir.path(),
        FsConfig {
            hidden: vec![(meta.dev(), meta.ino())],
            ..FsConfig::default()
        },
    )
    .unwrap();
    let err = fs.lookup(&me(), ROOT_INODE, c"home").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    fs.lookup(&me(), ROOT_INODE, c"other").unwrap();
}
