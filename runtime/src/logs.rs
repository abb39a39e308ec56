//! The output log: the workload's and exec sessions' output, one JSON object per chunk.
//!
//! The supervisor appends; msbd reads for `msb logs`. Output is bytes, the log is text: chunks
//! are decoded as UTF-8 lossily (as Docker's json-file driver does).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use msb_api::LogEntry;

/// The output log's cap when msbd's configuration names none: past it the log is rotated once
/// (`output.1.jsonl`), so a sandbox's log takes at most twice this on the host.
pub const DEFAULT_OUTPUT_LOG_MAX_BYTES: u64 = 16 << 20;
/// The smallest cap msbd accepts (a cap below one output frame would rotate at every chunk).
pub const MIN_OUTPUT_LOG_MAX_BYTES: u64 = 64 << 10;

/// The rotated log beside `path` (`output.jsonl` -> `output.1.jsonl`).
pub fn rotated_path(path: &Path) -> PathBuf {
    path.with_extension("1.jsonl")
}

/// The file counting the bytes rotation dropped, beside `path`.
fn dropped_path(path: &Path) -> PathBuf {
    path.with_extension("dropped")
}

/// Bytes of output the log's cap dropped so far (whole rotated logs overwritten); 0 when none.
pub fn dropped_bytes(path: &Path) -> u64 {
    std::fs::read_to_string(dropped_path(path))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Appends entries, flushing each so followers see it at once. When the next entry would take
/// the file past its cap, the file becomes `output.1.jsonl` (the previous one, if any, is
/// dropped and its size counted in `output.dropped`) and a new file starts.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
    path: PathBuf,
    written: u64,
    max_bytes: u64,
}

impl LogWriter {
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = Self::create(path)?;
        Ok(Self {
            written: file.metadata()?.len(),
            file,
            path: path.to_owned(),
            max_bytes: max_bytes.max(MIN_OUTPUT_LOG_MAX_BYTES),
        })
    }

    fn create(path: &Path) -> io::Result<File> {
        // 0600: it holds whatever the workload printed (msb_host::private).
        msb_host::private::create_options().append(true).open(path)
    }

    pub fn append(&mut self, entry: &LogEntry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).expect("log entry serialises");
        line.push(b'\n');
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.written += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let rotated = rotated_path(&self.path);
        let dropped = match std::fs::metadata(&rotated) {
            Ok(old) => old.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        if dropped > 0 {
            let total = dropped_bytes(&self.path) + dropped;
            // Whole or not at all: written beside, then renamed over.
            let target = dropped_path(&self.path);
            let staging = target.with_extension("dropped.new");
            let mut file = msb_host::private::create_options()
                .write(true)
                .truncate(true)
                .open(&staging)?;
            file.write_all(total.to_string().as_bytes())?;
            std::fs::rename(&staging, &target)?;
        }
        std::fs::rename(&self.path, &rotated)?;
        self.file = Self::create(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

/// Parses the complete lines of `bytes` (a partial last line is left out); returns the entries
/// and how many bytes the complete lines took.
fn parse_lines(bytes: &[u8]) -> (Vec<LogEntry>, usize) {
    let mut entries = Vec::new();
    let mut used = 0;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        used += line.len();
        if let Ok(entry) = serde_json::from_slice(&line[..line.len() - 1]) {
            entries.push(entry);
        }
    }
    (entries, used)
}

/// Reads complete entries from `offset` on; returns them and the offset after the last one.
/// A partial last line (being written) is left for the next call.
pub fn read_from(path: &Path, offset: u64) -> io::Result<(Vec<LogEntry>, u64)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut position = offset;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 || !line.ends_with(b"\n") {
            break;
        }
        position += n as u64;
        if let Ok(entry) = serde_json::from_slice(&line[..n - 1]) {
            entries.push(entry);
        }
    }
    Ok((entries, position))
}

/// The last `n` entries of one file, read from its end in blocks (never the whole file), and
/// the file's length up to its last complete line.
fn tail_of(path: &Path, n: usize) -> io::Result<(Vec<LogEntry>, u64)> {
    const BLOCK: u64 = 64 << 10;
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut start = len;
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let newlines = buffer.iter().filter(|b| **b == b'\n').count();
        // n complete lines need n + 1 newlines in view (the one before the first), or the start.
        if start == 0 || newlines > n {
            break;
        }
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buffer);
        buffer = block;
        start = from;
    }
    // Drop the partial first line unless the view starts at the file's start.
    let first = if start == 0 {
        0
    } else {
        buffer
            .iter()
            .position(|b| *b == b'\n')
            .map_or(buffer.len(), |i| i + 1)
    };
    let (mut entries, used) = parse_lines(&buffer[first..]);
    let skip = entries.len().saturating_sub(n);
    entries.drain(..skip);
    Ok((entries, start + (first + used) as u64))
}

/// Where a reader of the log is: the file it reads (by inode) and how far.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogCursor {
    inode: Option<u64>,
    offset: u64,
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// The whole log (the rotated file, then the current one), or with `tail` its last entries,
/// and a cursor after them for [`read_more`].
pub fn read_log(path: &Path, tail: Option<usize>) -> io::Result<(Vec<LogEntry>, LogCursor)> {
    let current_inode = inode(path);
    let (entries, offset) = match tail {
        Some(n) => {
            let (mut entries, offset) = tail_of(path, n)?;
            if entries.len() < n {
                let (mut older, _) = tail_of(&rotated_path(path), n - entries.len())?;
                older.append(&mut entries);
                entries = older;
            }
            (entries, offset)
        }
        None => {
            let (mut entries, _) = read_from(&rotated_path(path), 0)?;
            let (mut newer, offset) = read_from(path, 0)?;
            entries.append(&mut newer);
            (entries, offset)
        }
    };
    let cursor = LogCursor {
        inode: current_inode,
        offset,
    };
    Ok((entries, cursor))
}

/// What was appended since `cursor`. When the file was rotated meanwhile, the rest of the
/// rotated file comes first.
pub fn read_more(path: &Path, cursor: &mut LogCursor) -> io::Result<Vec<LogEntry>> {
    let now = inode(path);
    let mut entries = Vec::new();
    if cursor.inode.is_some() && now != cursor.inode {
        let rotated = rotated_path(path);
        if inode(&rotated) == cursor.inode {
            entries = read_from(&rotated, cursor.offset)?.0;
        }
        cursor.offset = 0;
    }
    cursor.inode = now.or(cursor.inode);
    let (mut more, offset) = read_from(path, cursor.offset)?;
    cursor.offset = offset;
    entries.append(&mut more);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_incrementally_skipping_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        assert_eq!(read_from(&path, 0).unwrap().0, vec![]);
        let mut w = LogWriter::open(&path, DEFAULT_OUTPUT_LOG_MAX_BYTES).unwrap();
        let e = |d: &str| LogEntry {
            ts_ms: 1,
            source: "main".into(),
            stream: "stdout".into(),
            data: d.into(),
        };
        w.append(&e("a\n")).unwrap();
        let (got, off) = read_from(&path, 0).unwrap();
        assert_eq!(got, vec![e("a\n")]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"ts_ms\":")
            .unwrap();
        let (got, off2) = read_from(&path, off).unwrap();
        assert!(got.is_empty());
        assert_eq!(off2, off);
    }

    fn entry(i: usize) -> LogEntry {
        LogEntry {
            ts_ms: i as u64,
            source: "main".into(),
            stream: "stdout".into(),
            data: format!("line {i} {}\n", "x".repeat(100)),
        }
    }

    #[test]
    fn the_cap_rotates_once_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.jsonl");
        let mut w = LogWriter::open(&path, MIN_OUTPUT_LOG_MAX_BYTES).unwrap();
        let line_len = serde_json::to_vec(&entry(0)).unwrap().len() as u64 + 1;
        let total = 3000;
        for i in 0..total {
            w.append(&entry(i)).unwrap();
        }
        let current = std::fs::metadata(&path).unwrap().len();
        let rotated = std::fs::metadata(rotated_path(&path)).unwrap().len();
        assert!(current <= MIN_OUTPUT_LOG_MAX_BYTES && rotated <= MIN_OUTPUT_LOG_MAX_BYTES);
        // Every byte written is kept or counted as dropped; lines have one length here
        // (entry numbers 1000-2999 have four digits, the first ones fewer).
        let written: u64 = (0..total)
            .map(|i| serde_json::to_vec(&entry(i)).unwrap().len() as u64 + 1)
            .sum();
        assert_eq!(current + rotated + dropped_bytes(&path), written);
        assert!(dropped_bytes(&path) >= line_len);
        // The whole log is the rotated file then the current one, in order, to the last line.
        let (all, _) = read_log(&path, None).unwrap();
        let last = all.last().unwrap().ts_ms as usize;
        assert_eq!(last, total - 1);
        assert!(all.windows(2).all(|w| w[1].ts_ms == w[0].ts_ms + 1));
    }

    #[test]
    fn tail_reads_from_the_end_across_the_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.jsonl");
        let mut w = LogWriter::open(&path, MIN_OUTPUT_LOG_MAX_BYTES).unwrap();
        for i in 0..700 {
            w.append(&entry(i)).unwrap();
        }
        // A partial line being written is not an entry.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"ts_ms\":")
            .unwrap();
        let current_lines = read_from(&path, 0).unwrap().0.len();
        assert!(current_lines < 700, "rotated once");
        for n in [0, 1, 5, current_lines, current_lines + 3, 10_000] {
            let (got, cursor) = read_log(&path, Some(n)).unwrap();
            let want: Vec<u64> = (700u64.saturating_sub(n as u64)..700).collect();
            let first_kept = read_log(&path, None).unwrap().0[0].ts_ms;
            let want: Vec<u64> = want.into_iter().filter(|t| *t >= first_kept).collect();
            assert_eq!(
                got.iter().map(|e| e.ts_ms).collect::<Vec<_>>(),
                want,
                "tail {n}"
            );
            assert_eq!(cursor.offset, read_from(&path, 0).unwrap().1);
        }
    }

    #[test]
    fn a_follower_reads_through_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.jsonl");
        let mut w = LogWriter::open(&path, MIN_OUTPUT_LOG_MAX_BYTES).unwrap();
        w.append(&entry(0)).unwrap();
        let (mut seen, mut cursor) = read_log(&path, None).unwrap();
        for i in 1..1000 {
            w.append(&entry(i)).unwrap();
            if i % 97 == 0 {
                seen.extend(read_more(&path, &mut cursor).unwrap());
            }
        }
        seen.extend(read_more(&path, &mut cursor).unwrap());
        let got: Vec<u64> = seen.iter().map(|e| e.ts_ms).collect();
        assert_eq!(got, (0..1000).collect::<Vec<u64>>());
    }
}
