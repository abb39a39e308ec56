//! The run record: the supervisor's account of the current run, in `<sandbox>/run.json`.
//!
//! The supervisor writes it (atomically, by an exchange of names) at every phase change; msbd reads it when
//! the supervisor rings (watch connection) and when it reattaches after a restart. It is the
//! only state that crosses the msbd/supervisor boundary outside the socket, so a restarted msbd
//! learns everything it missed from it.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::lifecycle::TerminationReason;

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    /// Supervisor up, sandbox being built, agent not ready yet.
    Starting,
    /// Agent ready, workload started.
    Running,
    /// Stop in progress.
    Draining,
    /// The run is over; `reason` says why. The supervisor exits right after writing this.
    Exited,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: String,
    pub supervisor_pid: i32,
    pub supervisor_start_ticks: Option<u64>,
    /// Host pid of the sandbox's PID 1 (the agent).
    pub init_pid: Option<i32>,
    /// Pid of the workload inside the sandbox's pid namespace.
    pub workload_pid: Option<u32>,
    pub phase: RunPhase,
    pub started_at_ms: u64,
    pub ended_at_ms: Option<u64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<TerminationReason>,
    /// Why the run failed, when the runtime (not the workload) failed it.
    pub error: Option<String>,
    /// Processes the kernel's OOM killer ended in the sandbox during the run (`None`: unknown).
    #[serde(default)]
    pub oom_kills: Option<u64>,
    /// When each boot phase ended, for msbd's boot spans and histograms.
    #[serde(default)]
    pub boot: BootTimes,
}

/// Ends of the boot phases, in microseconds since the Unix epoch (the first is the start of the
/// supervisor). Phases: spawn (msbd's spawn -> `supervisor_us`), sandbox (-> `sandbox_us`:
/// namespaces, root filesystem, cgroups), agent (-> `agent_us`: the agent said ready),
/// workload (-> `workload_us`: the command runs; an attached run waits here for its client).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct BootTimes {
    pub supervisor_us: Option<u64>,
    pub sandbox_us: Option<u64>,
    pub agent_us: Option<u64>,
    pub workload_us: Option<u64>,
}

impl RunRecord {
    /// Reads the record at `path`. A reader that opened the file just before [`RunRecord::write`]
    /// exchanged it away and is still reading when the next write rewrites it (the two writes
    /// after a start can be a millisecond apart) sees half a record: that read is tried again.
    /// An empty file is no record (`NotFound`): a directory recycled for another sandbox keeps
    /// its record files, emptied, until that sandbox's first write (msbd's warm pool).
    pub fn read(path: &Path) -> std::io::Result<RunRecord> {
        let mut attempt = 0;
        loop {
            let bytes = std::fs::read(path)?;
            if bytes.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{}: no record yet (empty)", path.display()),
                ));
            }
            match serde_json::from_slice(&bytes) {
                Ok(record) => return Ok(record),
                Err(_) if attempt < 2 => attempt += 1,
                Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            }
        }
    }

    /// Writes to the temporary file beside `path` and exchanges the two names
    /// (`renameat2(RENAME_EXCHANGE)`), so readers never see half a record; the temporary name
    /// then holds the record before, rewritten by the next write. Unlike a rename over `path`
    /// this frees no inode and the next write allocates none: a run writes its record three
    /// times, and on an ext4 without a journal every allocation scans past the inodes deleted
    /// in the last seconds. A plain rename when there is no record yet. Not synced to disk: the
    /// record describes processes, which a host crash ends anyway, and msbd reads it from the
    /// page cache (ADR 003).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use nix::fcntl::{renameat2, RenameFlags};
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("json.tmp");
        let mut file = msb_host::private::create_options()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).expect("record serialises"))?;
        drop(file);
        match renameat2(None, &tmp, None, path, RenameFlags::RENAME_EXCHANGE) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ENOENT) => std::fs::rename(&tmp, path),
            Err(e) => Err(e.into()),
        }
    }
}

/// Times as the record carries them (defined beside `MsbHome`, which the client shares).
pub use msb_host::clock::{now_ms, now_us};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        let record = RunRecord {
            run_id: "r1".into(),
            supervisor_pid: 42,
            supervisor_start_ticks: Some(7),
            init_pid: Some(43),
            workload_pid: Some(2),
            phase: RunPhase::Exited,
            started_at_ms: 1,
            ended_at_ms: Some(2),
            exit_code: Some(3),
            signal: None,
            reason: Some(TerminationReason::Failed),
            error: None,
            oom_kills: Some(0),
            boot: BootTimes {
                supervisor_us: Some(10),
                sandbox_us: Some(20),
                agent_us: Some(30),
                workload_us: None,
            },
        };
        record.write(&path).unwrap();
        assert_eq!(RunRecord::read(&path).unwrap(), record);
        assert!(!path.with_extension("json.tmp").exists());
        // The next writes exchange the names: the record is the latest, and after the first
        // exchange no inode is made or freed.
        use std::os::unix::fs::MetadataExt;
        let first = std::fs::metadata(&path).unwrap().ino();
        let second = RunRecord {
            phase: RunPhase::Running,
            ..record.clone()
        };
        second.write(&path).unwrap();
        assert_eq!(RunRecord::read(&path).unwrap(), second);
        let tmp = path.with_extension("json.tmp");
        assert_eq!(std::fs::metadata(&tmp).unwrap().ino(), first);
        let inodes = [
            std::fs::metadata(&path).unwrap().ino(),
            std::fs::metadata(&tmp).unwrap().ino(),
        ];
        record.write(&path).unwrap();
        assert_eq!(RunRecord::read(&path).unwrap(), record);
        assert_eq!(
            [
                std::fs::metadata(&tmp).unwrap().ino(),
                std::fs::metadata(&path).unwrap().ino()
            ],
            inodes
        );
        // Emptied for another sandbox (both files kept): no record until its first write,
        // which exchanges the names as before.
        for name in [&path, &tmp] {
            std::fs::File::create(name).unwrap();
        }
        let read = RunRecord::read(&path).unwrap_err();
        assert_eq!(read.kind(), std::io::ErrorKind::NotFound, "{read}");
        second.write(&path).unwrap();
        assert_eq!(RunRecord::read(&path).unwrap(), second);
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            inodes[0],
            "no inode made"
        );
    }
}
