//! Which host ids a home's sandboxes run as.
//!
//! Every sandbox of one `MSB_HOME` runs in a user namespace that maps its ids `0..65536` to one
//! unprivileged host range, so root in a sandbox is an ordinary, otherwise unused host user. The
//! range is chosen once per home and kept in `$MSB_HOME/idmap.json`
//! (`{"host_uid": N, "host_gid": N, "count": 65536}`): by default a 65,536-id block between 2^30
//! and 2^31 picked from a hash of the home's path, far above the ids distributions give users
//! and their subordinate ranges (`/etc/subuid` starts at 100,000). An operator may write the file
//! before the first sandbox to choose another range (for example the one `/etc/subuid` lists for
//! a dedicated user); changing it later makes existing sandboxes' files shift at their next
//! start.

use std::io;
use std::path::Path;

pub use msb_namespace::IdMap;

use crate::paths::MsbHome;

/// Ids mapped into each sandbox: every id a Linux distribution uses, `nobody` (65534) included.
pub const SANDBOX_IDS: u32 = 65_536;
/// Where default ranges start (2^30) and how many blocks of [`SANDBOX_IDS`] they pick from, so
/// that every default range ends at or below 2^31.
const DEFAULT_BASE: u32 = 1 << 30;
const DEFAULT_BLOCKS: u64 = 16_384;

/// The default range of the home at `root` (pure): FNV-1a of the path picks the block.
pub fn default_for(root: &Path) -> IdMap {
    use std::os::unix::ffi::OsStrExt;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in root.as_os_str().as_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let block = (hash % DEFAULT_BLOCKS) as u32;
    let base = DEFAULT_BASE + block * SANDBOX_IDS;
    IdMap {
        host_uid: base,
        host_gid: base,
        count: SANDBOX_IDS,
    }
}

/// Checks a range read from a file (pure): the whole of `0..65536` is mapped, and the host side
/// neither touches the ids below 65,536 (host root, system and login users) nor wraps.
pub fn validate(map: &IdMap) -> Result<(), String> {
    if map.count != SANDBOX_IDS {
        return Err(format!("count must be {SANDBOX_IDS}, not {}", map.count));
    }
    for (what, base) in [("host_uid", map.host_uid), ("host_gid", map.host_gid)] {
        if base < SANDBOX_IDS {
            return Err(format!(
                "{what} {base} is below {SANDBOX_IDS}: the range would include host root or \
                 ordinary host users"
            ));
        }
        if u64::from(base) + u64::from(map.count) > u64::from(u32::MAX) {
            return Err(format!(
                "{what} {base} + {} passes the largest id",
                map.count
            ));
        }
    }
    Ok(())
}

/// The map recorded in the home at `root` (`idmap.json`), if there is a valid one; never
/// writes (for a warm supervisor preparing ahead of time).
pub fn read(root: &Path) -> Option<IdMap> {
    let map: IdMap = serde_json::from_slice(&std::fs::read(root.join("idmap.json")).ok()?).ok()?;
    validate(&map).ok().map(|()| map)
}

/// The home's range: read from `idmap.json`, or chosen and written there (whole, then renamed
/// into place) on first use. A file that does not parse or fails [`validate`] is an error
/// naming it.
pub fn for_home(home: &MsbHome) -> io::Result<IdMap> {
    let path = home.root().join("idmap.json");
    let invalid = |reason: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {reason}", path.display()),
        )
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let map: IdMap = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
            validate(&map).map_err(invalid)?;
            Ok(map)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let map = default_for(home.root());
            std::fs::create_dir_all(home.root())?;
            let temporary = path.with_extension("json.tmp");
            std::fs::write(&temporary, serde_json::to_vec_pretty(&map)?)?;
            std::fs::rename(&temporary, &path)?;
            Ok(map)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ranges_are_unprivileged_whole_and_differ_by_home() {
        let a = default_for(Path::new("/root/.msb"));
        let b = default_for(Path::new("/srv/msb"));
        for map in [a, b] {
            validate(&map).unwrap();
            assert!(map.host_uid >= DEFAULT_BASE);
            assert!(u64::from(map.host_uid) + u64::from(map.count) <= 1 << 31);
            assert_eq!(map.host_uid % SANDBOX_IDS, 0);
        }
        assert_ne!(a, b);
        assert_eq!(a, default_for(Path::new("/root/.msb")), "stable");
    }

    #[test]
    fn ranges_touching_host_users_or_wrapping_are_refused() {
        let map = |uid, gid, count| IdMap {
            host_uid: uid,
            host_gid: gid,
            count,
        };
        assert!(validate(&map(0, 1 << 20, SANDBOX_IDS))
            .unwrap_err()
            .contains("host_uid"));
        assert!(validate(&map(1 << 20, 1000, SANDBOX_IDS))
            .unwrap_err()
            .contains("host_gid"));
        assert!(validate(&map(u32::MAX - 10, 1 << 20, SANDBOX_IDS)).is_err());
        assert!(validate(&map(1 << 20, 1 << 20, 1000))
            .unwrap_err()
            .contains("count"));
        validate(&map(100_000, 100_000, SANDBOX_IDS)).unwrap();
    }

    #[test]
    fn a_home_keeps_its_range_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let home = MsbHome::new(dir.path());
        let first = for_home(&home).unwrap();
        assert_eq!(for_home(&home).unwrap(), first);
        std::fs::write(dir.path().join("idmap.json"), r#"{"host_uid": 0}"#).unwrap();
        let error = for_home(&home).unwrap_err().to_string();
        assert!(error.contains("idmap.json"), "{error}");
    }
}
