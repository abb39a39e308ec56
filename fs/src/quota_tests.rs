//! Property tests of the ledger against a model of a directory of a few files.

use super::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Write `len` bytes at `offset` into file `file` (short writes allowed).
    Write { file: usize, offset: u64, len: u64 },
    /// Set the size of file `file` (all or nothing).
    Truncate { file: usize, size: u64 },
    /// Delete file `file` (its bytes go, nothing is refunded).
    Unlink { file: usize },
    /// Rewrite the first `len` bytes of `file` in place.
    Rewrite { file: usize, len: u64 },
}

const FILES: usize = 4;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..FILES, 0u64..40_000, 1u64..20_000)
            .prop_map(|(file, offset, len)| Op::Write { file, offset, len }),
        2 => (0..FILES, 0u64..60_000).prop_map(|(file, size)| Op::Truncate { file, size }),
        1 => (0..FILES).prop_map(|file| Op::Unlink { file }),
        2 => (0..FILES, 0u64..20_000).prop_map(|(file, len)| Op::Rewrite { file, len }),
    ]
}

fn errno(result: &io::Result<impl Sized>) -> Option<i32> {
    result.as_ref().err().and_then(|e| e.raw_os_error())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ledger_matches_model(
        existing in proptest::collection::vec(0u64..30_000, FILES),
        limit in 0u64..100_000,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut sizes = existing.clone();
        let baseline: u64 = existing.iter().sum();
        let quota = DirQuota::new(Some(limit));
        prop_assert_eq!(quota.ensure_baseline(|| Ok(baseline)).unwrap(), baseline);
        // A second call never walks again.
        prop_assert_eq!(quota.ensure_baseline(|| panic!("walked twice")).unwrap(), baseline);

        for op in ops {
            let total: u64 = sizes.iter().sum();
            let real_before = total.saturating_sub(baseline);
            let used_before = quota.state().used_bytes;
            match op {
                Op::Write { file, offset, len } => {
                    let size = sizes[file];
                    let growth = (offset + len).saturating_sub(size);
                    let result = quota.charge_up_to(growth, || Ok(total));
                    match result {
                        Ok(granted) => {
                            prop_assert!(granted <= growth);
                            if granted < growth {
                                // Only short when the limit was really reached.
                                prop_assert_eq!(real_before + granted, limit);
                            }
                            let end = (offset + len).min(size + granted);
                            if end > size && end > offset {
                                sizes[file] = end;
                            }
                        }
                        Err(_) => {
                            prop_assert_eq!(errno(&result), Some(libc::ENOSPC));
                            prop_assert!(growth > 0);
                            prop_assert!(real_before >= limit, "refused with room left");
                        }
                    }
                }
                Op::Truncate { file, size } => {
                    let growth = size.saturating_sub(sizes[file]);
                    let result = quota.charge_all(growth, || Ok(total));
                    match result {
                        Ok(()) => sizes[file] = size,
                        Err(_) => {
                            prop_assert_eq!(errno(&result), Some(libc::ENOSPC));
                            prop_assert!(real_before + growth > limit, "refused though it fits");
                        }
                    }
                }
                Op::Unlink { file } => sizes[file] = 0,
                Op::Rewrite { file, len } => {
                    let len = len.min(sizes[file]);
                    let growth = len.saturating_sub(sizes[file]);
                    prop_assert_eq!(growth, 0);
                    prop_assert_eq!(quota.charge_up_to(growth, || panic!("walked")).unwrap(), 0);
                    prop_assert_eq!(quota.state().used_bytes, used_before, "rewrite charged");
                }
            }
            let real = sizes.iter().sum::<u64>().saturating_sub(baseline);
            let used = quota.state().used_bytes;
            prop_assert!(real <= limit, "real growth {} beyond limit {}", real, limit);
            prop_assert!(used >= real, "used {} below real {}", used, real);
            prop_assert!(used <= limit, "used {} beyond limit {}", used, limit);
        }
    }

    #[test]
    fn statfs_shows_the_budget(limit in 0u64..1 << 40, baseline in 0u64..1 << 40, used_part in 0u64..=100) {
        let used = limit / 100 * used_part;
        let (total, free) = statfs_blocks(limit, baseline, used);
        prop_assert_eq!(total, (baseline + limit) / STATFS_BLOCK_BYTES);
        prop_assert_eq!(free, (limit - used) / STATFS_BLOCK_BYTES);
        prop_assert!(free <= total);
    }
}

#[test]
fn unbounded_counts_nothing_and_never_walks() {
    let quota = DirQuota::new(None);
    assert_eq!(quota.ensure_baseline(|| panic!("walked")).unwrap(), 0);
    assert_eq!(
        quota.charge_up_to(1 << 40, || panic!("walked")).unwrap(),
        1 << 40
    );
    quota.charge_all(1 << 40, || panic!("walked")).unwrap();
    assert_eq!(quota.state(), QuotaState::default());
}

#[test]
fn recount_forgives_deleted_bytes() {
    let quota = DirQuota::new(Some(100));
    quota.ensure_baseline(|| Ok(0)).unwrap();
    assert_eq!(quota.charge_up_to(100, || panic!("fits")).unwrap(), 100);
    // The 100 bytes were deleted on the way: the recount finds an empty tree.
    assert_eq!(quota.charge_up_to(60, || Ok(0)).unwrap(), 60);
    assert_eq!(quota.state().used_bytes, 60);
    // 40 left: a 50-byte write is shortened, then nothing fits.
    assert_eq!(quota.charge_up_to(50, || Ok(60)).unwrap(), 40);
    let refused = quota.charge_up_to(1, || Ok(100)).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::ENOSPC));
}
