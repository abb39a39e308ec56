//! A sandbox's user-namespace id map as the file server applies it to callers and owners.

/// A user namespace's id map as the server applies it: ids `0..count` inside are host uids
/// `uid_base..uid_base + count` and host gids `gid_base..gid_base + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdShift {
    pub uid_base: u32,
    pub gid_base: u32,
    pub count: u32,
}

/// The overflow id (`nobody`): what an id outside the map becomes, both ways.
pub const OVERFLOW_ID: u32 = 65534;

impl IdShift {
    /// A caller's host id (the kernel reports the mapped one) as the id it has inside, which
    /// is what the server acts with on disk; an id outside the map acts as `nobody`.
    fn to_disk(self, host: u32, base: u32) -> u32 {
        match host.checked_sub(base) {
            Some(inside) if inside < self.count => inside,
            _ => OVERFLOW_ID,
        }
    }

    /// Whether the host uid `host` is one of the namespace's.
    pub fn maps_uid(&self, host: u32) -> bool {
        host.checked_sub(self.uid_base)
            .is_some_and(|n| n < self.count)
    }

    /// Whether the host gid `host` is one of the namespace's.
    pub fn maps_gid(&self, host: u32) -> bool {
        host.checked_sub(self.gid_base)
            .is_some_and(|n| n < self.count)
    }

    /// An on-disk owner as the host id the kernel maps back into the sandbox; an owner the
    /// map does not cover shows as `nobody` (an unmapped host id, which the kernel reports
    /// as its overflow id).
    fn to_host(self, disk: u32, base: u32) -> u32 {
        if disk < self.count {
            disk + base
        } else {
            OVERFLOW_ID
        }
    }

    pub fn uid_to_disk(&self, host: u32) -> u32 {
        self.to_disk(host, self.uid_base)
    }

    pub fn gid_to_disk(&self, host: u32) -> u32 {
        self.to_disk(host, self.gid_base)
    }

    pub fn uid_to_host(&self, disk: u32) -> u32 {
        self.to_host(disk, self.uid_base)
    }

    pub fn gid_to_host(&self, disk: u32) -> u32 {
        self.to_host(disk, self.gid_base)
    }
}
