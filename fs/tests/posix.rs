//! Everyday operations and the host-path rules through a real FUSE mount (root and
//! /dev/fuse, else skipped).

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use msb_fs::{Context, Op, ROOT_INODE};
use support::mount;

fn names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn rename_link_unlink_readdir() {
    let Some(m) = mount(None, |served, _| {
        std::fs::write(served.join("before"), b"old").unwrap();
    }) else {
        return;
    };
    let mnt = &m.mnt;
    assert_eq!(std::fs::read(mnt.join("before")).unwrap(), b"old");

    std::fs::create_dir(mnt.join("dir")).unwrap();
    std::fs::write(mnt.join("dir/a"), b"hello").unwrap();
    std::fs::rename(mnt.join("dir/a"), mnt.join("b")).unwrap();
    std::fs::hard_link(mnt.join("b"), mnt.join("dir/c")).unwrap();
    let b = std::fs::metadata(mnt.join("b")).unwrap();
    let c = std::fs::metadata(mnt.join("dir/c")).unwrap();
    assert_eq!((b.ino(), b.nlink()), (c.ino(), 2));
    std::os::unix::fs::symlink("b", mnt.join("sym")).unwrap();
    assert_eq!(
        std::fs::read_link(mnt.join("sym")).unwrap().to_str(),
        Some("b")
    );
    assert_eq!(std::fs::read(mnt.join("sym")).unwrap(), b"hello");

    assert_eq!(
        names(mnt),
        ["b", "before", "dir", "sym"].map(String::from).into()
    );
    assert_eq!(names(&mnt.join("dir")), ["c"].map(String::from).into());
    // The host sees the same thing.
    assert_eq!(names(&m.served), names(mnt));

    std::fs::remove_file(mnt.join("b")).unwrap();
    assert_eq!(std::fs::metadata(mnt.join("dir/c")).unwrap().nlink(), 1);
    assert!(
        std::fs::remove_dir(mnt.join("dir")).is_err(),
        "rmdir of a non-empty dir"
    );
    std::fs::remove_file(mnt.join("dir/c")).unwrap();
    std::fs::remove_dir(mnt.join("dir")).unwrap();

    // A directory bigger than one readdir reply.
    std::fs::create_dir(mnt.join("many")).unwrap();
    for i in 0..600 {
        std::fs::write(
            mnt.join(format!("many/file-with-a-longish-name-{i:04}")),
            b"",
        )
        .unwrap();
    }
    assert_eq!(names(&mnt.join("many")).len(), 600);

    // Attributes: chmod, truncate, times.
    let f = mnt.join("before");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(m.served.join("before")).unwrap().mode() & 0o777,
        0o600
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(1)
        .unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"o");
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(
        std::fs::metadata(m.served.join("before")).unwrap().mtime(),
        1_000_000_000
    );

    // A guest's mode reaches the host unmasked by the server's umask.
    std::fs::create_dir(mnt.join("open")).unwrap();
    std::fs::set_permissions(mnt.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        std::fs::metadata(m.served.join("open")).unwrap().mode() & 0o777,
        0o777
    );

    let fifo = mnt.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let kind = std::fs::metadata(m.served.join("fifo"))
        .unwrap()
        .file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind));
}

/// The host kernel checks permissions as the caller (fs ids switched per request) and new
/// files belong to the caller.
#[test]
fn the_host_checks_permissions_as_the_caller() {
    let Some(m) = mount(None, |served, _| {
        std::fs::create_dir(served.join("locked")).unwrap();
        std::fs::create_dir(served.join("shared")).unwrap();
        let all = std::fs::Permissions::from_mode(0o777);
        std::fs::set_permissions(served.join("shared"), all).unwrap();
        std::fs::write(served.join("secret"), b"root only").unwrap();
        let owner_only = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(served.join("secret"), owner_only).unwrap();
    }) else {
        return;
    };
    let mnt = m.mnt.clone();
    // FUSE requests carry the caller's fs ids; switch them on a thread of our own.
    let outcome = std::thread::spawn(move || {
        nix::unistd::setfsgid(nix::unistd::Gid::from_raw(1000));
        nix::unistd::setfsuid(nix::unistd::Uid::from_raw(1000));
        (
            std::fs::write(mnt.join("locked/x"), b"x").map_err(|e| e.raw_os_error()),
            std::fs::read(mnt.join("secret")).map_err(|e| e.raw_os_error()),
            std::fs::write(mnt.join("shared/mine"), b"x").map_err(|e| e.raw_os_error()),
        )
    })
    .join()
    .unwrap();
    assert_eq!(outcome.0, Err(Some(libc::EACCES)));
    assert_eq!(outcome.1, Err(Some(libc::EACCES)));
    assert_eq!(outcome.2, Ok(()));
    let mine = std::fs::metadata(m.served.join("shared/mine")).unwrap();
    assert_eq!((mine.uid(), mine.gid()), (1000, 1000));
}

#[test]
fn counters_match_the_workload() {
    let Some(m) = mount(None, |_, _| {}) else {
        return;
    };
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 123)
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(m.mnt.join("f"), &data).unwrap();
    assert!(
        std::fs::read(m.served.join("f")).unwrap() == data,
        "content differs on the host"
    );
    assert!(
        std::fs::read(m.mnt.join("f")).unwrap() == data,
        "content differs read back"
    );
    // Appends (O_APPEND takes the in-memory path of the splice receiver).
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(m.mnt.join("f"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"tail").unwrap();
    drop(log);
    assert!(std::fs::read(m.served.join("f"))
        .unwrap()
        .ends_with(b"tail"));
    let counters = m.session().fs().counters();
    assert_eq!(counters.written_bytes, data.len() as u64 + 4);
    assert!(counters.read_bytes >= data.len() as u64);
    assert!(counters.ops_of(Op::Create) == 1 && counters.ops_of(Op::Write) >= 3);
    assert!(counters.latency_buckets.iter().sum::<u64>() >= counters.ops_of(Op::Write));
}

/// A symbolic link in the served directory is resolved by the kernel on the mount side; the
/// server itself never follows one and refuses names that are not a single component.
#[test]
fn symlinks_never_take_the_server_outside_the_served_dir() {
    let Some(m) = mount(None, |served, outside| {
        std::os::unix::fs::symlink("/etc", served.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", served.join("up")).unwrap();
        std::os::unix::fs::symlink(outside, served.join("out")).unwrap();
        std::fs::create_dir(served.join("sub")).unwrap();
    }) else {
        return;
    };
    let fs = m.session().fs();
    // Through the mount: readlink gives the target verbatim; following it is the kernel's
    // business, in the caller's namespace, and never reaches the server's open/create.
    assert_eq!(
        std::fs::read_link(m.mnt.join("etc")).unwrap().to_str(),
        Some("/etc")
    );
    let before = fs.counters();
    std::fs::write(m.mnt.join("out/made-through-the-link"), b"x").unwrap();
    assert!(m.outside.join("made-through-the-link").exists());
    let after = fs.counters();
    assert_eq!(after.ops_of(Op::Create), before.ops_of(Op::Create));
    assert_eq!(after.ops_of(Op::Open), before.ops_of(Op::Open));
    assert_eq!(after.written_bytes, before.written_bytes);

    // Straight to the server with crafted names.
    let root = Context::default();
    let err = |r: std::io::Result<msb_fs::Entry>| r.unwrap_err().raw_os_error();
    assert_eq!(
        err(fs.lookup(&root, ROOT_INODE, c"../x")),
        Some(libc::EACCES)
    );
    assert_eq!(
        err(fs.lookup(&root, ROOT_INODE, c"sub/../..")),
        Some(libc::EACCES)
    );
    assert_eq!(err(fs.lookup(&root, ROOT_INODE, c"..")), Some(libc::ENOENT));
    assert_eq!(
        err(fs.lookup(&root, ROOT_INODE, c"etc/passwd")),
        Some(libc::EACCES)
    );
    let created = fs.create(&root, ROOT_INODE, c"a/b", 0o644, libc::O_RDWR);
    assert_eq!(created.unwrap_err().raw_os_error(), Some(libc::EACCES));
    assert_eq!(
        err(fs.mkdir(&root, ROOT_INODE, c"../escape", 0o755)),
        Some(libc::EACCES)
    );
    let renamed = fs.rename(&root, ROOT_INODE, c"sub", ROOT_INODE, c"../sub", 0);
    assert_eq!(renamed.unwrap_err().raw_os_error(), Some(libc::EACCES));

    // A symlink is an inode of its own: the server neither lists, opens nor creates through it.
    for link in [c"etc", c"up", c"out"] {
        let entry = fs.lookup(&root, ROOT_INODE, link).unwrap();
        assert_eq!(entry.attr.st_mode & libc::S_IFMT, libc::S_IFLNK);
        assert_eq!(
            err(fs.lookup(&root, entry.inode, c"passwd")),
            Some(libc::ENOTDIR)
        );
        assert_eq!(
            fs.open(&root, entry.inode, libc::O_RDONLY)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            fs.opendir(&root, entry.inode, 0)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOTDIR)
        );
        assert_eq!(
            err(fs.mkdir(&root, entry.inode, c"x", 0o755)),
            Some(libc::ENOTDIR)
        );
        let made = fs.create(&root, entry.inode, c"x", 0o644, libc::O_RDWR);
        assert_eq!(made.unwrap_err().raw_os_error(), Some(libc::ENOTDIR));
        fs.forget(entry.inode, 1);
    }
    assert!(!m.outside.join("x").exists());
}

#[test]
fn forget_closes_host_descriptors() {
    let Some(m) = mount(None, |served, _| {
        for i in 0..50 {
            std::fs::write(served.join(format!("f{i}")), b"").unwrap();
        }
    }) else {
        return;
    };
    let fs = m.session().fs();
    let root = Context::default();
    let base = fs.inode_count();
    let entry = fs.lookup(&root, ROOT_INODE, c"f1").unwrap();
    let again = fs.lookup(&root, ROOT_INODE, c"f1").unwrap();
    assert_eq!(entry.inode, again.inode, "one inode per host object");
    assert_eq!(fs.inode_count(), base + 1);
    fs.forget(entry.inode, 1);
    assert_eq!(fs.inode_count(), base + 1, "one lookup still held");
    fs.forget(entry.inode, 1);
    assert_eq!(fs.inode_count(), base);
}
