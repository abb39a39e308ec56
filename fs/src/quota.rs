//! The write-quota ledger of one served directory.
//!
//! Semantics (microsandbox's, see `shared/reference/microsandbox.md` §3):
//!
//! - The **limit** is optional; without one nothing is counted and nothing is refused.
//! - The **baseline** is the logical size of everything already in the directory, measured once,
//!   lazily, at the first write-intent operation (so mounting never walks a big tree). It is
//!   never charged.
//! - Only **growth** is charged: a write, `fallocate` or truncate that moves a file's end from
//!   `st_size` to `new_end` costs `new_end − st_size`; rewriting bytes in place costs nothing.
//! - **used** is optimistic: it only goes up (unlink, rename and shrinking do not refund). When
//!   a charge would cross the limit, the directory is recounted (regular files' `st_size`,
//!   symbolic links not followed) and `used` is reset to `subtree − baseline`; only if the charge
//!   still does not fit is it refused (the caller answers `ENOSPC`).
//!
//! The arithmetic lives in pure functions ([`fits`], [`after_recount`]) that the property tests
//! check against a model; [`DirQuota`] adds the atomics and the locking.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Bytes in a block of the synthetic `statfs` of a quota'd mount.
pub const STATFS_BLOCK_BYTES: u64 = 4096;

/// `used + growth` when it stays within `limit`, else `None` (a recount is needed).
pub fn fits(limit: u64, used: u64, growth: u64) -> Option<u64> {
    used.checked_add(growth).filter(|total| *total <= limit)
}

/// After a recount that found `subtree_bytes` in the tree: the real usage
/// (`subtree − baseline`, never below 0) and how much of `want` bytes of growth can be granted
/// (`None` when nothing fits).
pub fn after_recount(limit: u64, baseline: u64, subtree_bytes: u64, want: u64) -> (u64, u64) {
    let real = subtree_bytes.saturating_sub(baseline);
    let room = limit.saturating_sub(real);
    (real, want.min(room))
}

/// A point-in-time view of a ledger, for metrics and `statfs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaState {
    /// The budget for growth, in bytes; `None` when the mount is unbounded.
    pub limit_bytes: Option<u64>,
    /// Bytes charged so far (optimistic upper bound of real growth), in bytes.
    pub used_bytes: u64,
    /// Logical size of what was there before the first write, in bytes; `None` until measured.
    pub baseline_bytes: Option<u64>,
}

/// The quota ledger of one served directory. Shared by all worker threads.
#[derive(Debug)]
pub struct DirQuota {
    limit: Option<u64>,
    baseline: OnceLock<u64>,
    used: AtomicU64,
    /// Serialises recounts (tree walks) so that a burst of writes at the limit walks once.
    recount: Mutex<()>,
}

impl DirQuota {
    /// A ledger with `limit` bytes of growth (`None`: unbounded, nothing counted).
    pub fn new(limit: Option<u64>) -> Self {
        DirQuota {
            limit,
            baseline: OnceLock::new(),
            used: AtomicU64::new(0),
            recount: Mutex::new(()),
        }
    }

    /// Restores a saved state (for snapshots): the baseline and what was used.
    pub fn restore(limit: Option<u64>, baseline: u64, used: u64) -> Self {
        let quota = DirQuota::new(limit);
        let _ = quota.baseline.set(baseline);
        quota.used.store(used, Ordering::Relaxed);
        quota
    }

    /// Whether this ledger enforces a limit.
    pub fn is_limited(&self) -> bool {
        self.limit.is_some()
    }

    /// Measures the baseline with `count` (the subtree's logical size) unless already done.
    /// Called at every write-intent operation; only the first one walks.
    pub fn ensure_baseline(&self, count: impl FnOnce() -> io::Result<u64>) -> io::Result<u64> {
        if self.limit.is_none() {
            return Ok(0);
        }
        if let Some(baseline) = self.baseline.get() {
            return Ok(*baseline);
        }
        let _guard = self.recount.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(baseline) = self.baseline.get() {
            return Ok(*baseline);
        }
        let measured = count()?;
        Ok(*self.baseline.get_or_init(|| measured))
    }

    /// Charges up to `want` bytes of growth and returns how many were granted: all of them when
    /// they fit, fewer when only part fits after a recount (a short write), `Err(ENOSPC)` when
    /// nothing does. `count` recounts the subtree's logical size (a tree walk).
    pub fn charge_up_to(
        &self,
        want: u64,
        count: impl FnOnce() -> io::Result<u64>,
    ) -> io::Result<u64> {
        let Some(limit) = self.limit else {
            return Ok(want);
        };
        if want == 0 {
            return Ok(0);
        }
        if self.try_fast(limit, want) {
            return Ok(want);
        }
        let _guard = self.recount.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have recounted while this one waited.
        if self.try_fast(limit, want) {
            return Ok(want);
        }
        let before = self.used.load(Ordering::Acquire);
        let subtree = count()?;
        let baseline = self.baseline.get().copied().unwrap_or(0);
        let (real, granted) = after_recount(limit, baseline, subtree, want);
        // Charges made by other threads during the walk may or may not be in `subtree`;
        // keep them (over-counting is the safe side).
        let mut current = self.used.load(Ordering::Acquire);
        loop {
            let during = current.saturating_sub(before);
            let next = real.saturating_add(during).saturating_add(granted);
            match self.used.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        if granted == 0 {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            Ok(granted)
        }
    }

    /// Charges exactly `growth` bytes or none (`fallocate`, truncate): `Err(ENOSPC)` when it does
    /// not fit even after a recount.
    pub fn charge_all(
        &self,
        growth: u64,
        count: impl FnOnce() -> io::Result<u64>,
    ) -> io::Result<()> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        if growth == 0 || self.try_fast(limit, growth) {
            return Ok(());
        }
        let _guard = self.recount.lock().unwrap_or_else(|p| p.into_inner());
        if self.try_fast(limit, growth) {
            return Ok(());
        }
        let subtree = count()?;
        let baseline = self.baseline.get().copied().unwrap_or(0);
        let (real, granted) = after_recount(limit, baseline, subtree, growth);
        let before = self.used.load(Ordering::Acquire);
        let charge = if granted == growth { growth } else { 0 };
        // Recounting only ever lowers `used` towards the truth; keep concurrent charges.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                Some(
                    real.saturating_add(current.saturating_sub(before))
                        .saturating_add(charge),
                )
            });
        if granted == growth {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        }
    }

    fn try_fast(&self, limit: u64, growth: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                fits(limit, used, growth)
            })
            .is_ok()
    }

    /// The ledger's current state.
    pub fn state(&self) -> QuotaState {
        QuotaState {
            limit_bytes: self.limit,
            used_bytes: self.used.load(Ordering::Acquire),
            baseline_bytes: self.baseline.get().copied(),
        }
    }
}

/// The synthetic `statfs` of a quota'd mount, in [`STATFS_BLOCK_BYTES`] blocks:
/// `(total, free)` with total = baseline + limit and free = avail = limit − used.
pub fn statfs_blocks(limit: u64, baseline: u64, used: u64) -> (u64, u64) {
    let total = baseline.saturating_add(limit) / STATFS_BLOCK_BYTES;
    let free = limit.saturating_sub(used) / STATFS_BLOCK_BYTES;
    (total, free)
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
