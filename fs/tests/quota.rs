//! Quota exactness through a real FUSE mount (root and /dev/fuse, else skipped).

mod support;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use support::{mount, MIB};

const QUOTA: u64 = 16 * MIB;

/// Writes `total` bytes in 1 MiB `write(2)`s; returns the bytes written and the error, if any.
fn write_until_error(file: &mut File, total: u64) -> (u64, Option<std::io::Error>) {
    let chunk = vec![0x5au8; MIB as usize];
    let mut written = 0u64;
    while written < total {
        let want = (total - written).min(MIB) as usize;
        match file.write(&chunk[..want]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => return (written, Some(e)),
        }
    }
    (written, None)
}

#[test]
fn writing_past_the_quota_fails_with_enospc_at_the_limit() {
    let Some(m) = mount(Some(QUOTA), |_, _| {}) else {
        return;
    };
    let mut file = File::create(m.mnt.join("big")).expect("create");
    let (written, error) = write_until_error(&mut file, 17 * MIB);
    let error = error.expect("a 17 MiB write into a 16 MiB quota must fail");
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    assert!(
        written.abs_diff(QUOTA) <= 4096,
        "failed after {written} bytes, expected 16 MiB ± 4 KiB"
    );
    drop(file);
    assert_eq!(
        std::fs::metadata(m.served.join("big")).unwrap().len(),
        written
    );
    let counters = m.session().fs().counters();
    assert_eq!(
        counters.written_bytes, written,
        "counters vs what the workload saw"
    );
    assert!(counters.enospc_rejections >= 1);
    assert_eq!(counters.quota.limit_bytes, Some(QUOTA));
    assert_eq!(counters.quota.baseline_bytes, Some(0));
    assert_eq!(counters.quota.used_bytes, written);
}

#[test]
fn pre_existing_files_are_not_charged_and_rewrites_are_free() {
    let Some(m) = mount(Some(QUOTA), |served, _| {
        std::fs::create_dir(served.join("old")).unwrap();
        std::fs::write(served.join("old/data"), vec![1u8; 20 * MIB as usize]).unwrap();
        std::os::unix::fs::symlink("data", served.join("old/link")).unwrap();
    }) else {
        return;
    };
    // Rewrite all of the 20 MiB that was there, in place: costs nothing.
    let old = OpenOptions::new()
        .write(true)
        .open(m.mnt.join("old/data"))
        .unwrap();
    let chunk = vec![2u8; MIB as usize];
    for i in 0..20 {
        old.write_all_at(&chunk, i * MIB).unwrap();
    }
    drop(old);
    let state = m.session().fs().quota_state();
    assert_eq!(
        state.baseline_bytes,
        Some(20 * MIB),
        "baseline: the 20 MiB already there"
    );
    assert_eq!(state.used_bytes, 0, "an in-place rewrite was charged");

    // New data: the whole budget is still there.
    let mut new = File::create(m.mnt.join("new")).unwrap();
    let (written, error) = write_until_error(&mut new, 15 * MIB);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(written, 15 * MIB);
    // Rewriting the new file's first 8 MiB a few times is free too.
    for _ in 0..4 {
        new.seek(SeekFrom::Start(0)).unwrap();
        write_until_error(&mut new, 8 * MIB);
    }
    assert_eq!(m.session().fs().quota_state().used_bytes, 15 * MIB);
}

#[test]
fn statvfs_shows_the_budget() {
    let Some(m) = mount(Some(QUOTA), |served, _| {
        std::fs::write(served.join("old"), vec![1u8; MIB as usize]).unwrap();
    }) else {
        return;
    };
    let st = nix::sys::statvfs::statvfs(&m.mnt).expect("statvfs");
    assert_eq!(st.fragment_size(), 4096);
    assert_eq!(st.blocks() * 4096, QUOTA + MIB, "total = baseline + limit");
    assert_eq!(
        st.blocks_available() * 4096,
        QUOTA,
        "available = limit − used"
    );
    assert_eq!(st.blocks_free() * 4096, QUOTA);

    std::fs::write(m.mnt.join("new"), vec![1u8; 3 * MIB as usize]).unwrap();
    let st = nix::sys::statvfs::statvfs(&m.mnt).expect("statvfs");
    assert_eq!(st.blocks_available() * 4096, QUOTA - 3 * MIB);
}

#[test]
fn truncate_and_fallocate_are_charged_for_growth() {
    let Some(m) = mount(Some(QUOTA), |_, _| {}) else {
        return;
    };
    let file = File::create(m.mnt.join("sparse")).unwrap();
    file.set_len(10 * MIB).unwrap();
    let err = file.set_len(17 * MIB).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    file.set_len(MIB).unwrap(); // shrinking is always allowed
    let err = nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        nix::fcntl::FallocateFlags::empty(),
        0,
        (17 * MIB) as i64,
    )
    .unwrap_err();
    assert_eq!(err, nix::errno::Errno::ENOSPC);
    // After the shrink the recount finds 1 MiB, so 15 more fit.
    nix::fcntl::fallocate(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        nix::fcntl::FallocateFlags::empty(),
        0,
        (16 * MIB) as i64,
    )
    .expect("fallocate within the budget");
    assert!(m.session().fs().counters().enospc_rejections >= 2);
}

#[test]
fn unbounded_mount_shows_the_host_disk() {
    let Some(m) = mount(None, |_, _| {}) else {
        return;
    };
    let host = nix::sys::statvfs::statvfs(&m.served).unwrap();
    let through = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    assert_eq!(host.blocks(), through.blocks());
    assert_eq!(m.session().fs().quota_state().baseline_bytes, None);
}
