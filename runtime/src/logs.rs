//! The output log: the workload's and exec sessions' output, one JSON object per chunk.
//!
//! The supervisor appends; msbd reads for `msb logs`. Output is bytes, the log is text: chunks
//! are decoded as UTF-8 lossily (as Docker's json-file driver does).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

pub use msb_api::LogEntry;

/// Appends entries, flushing each so followers see it at once.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
}

impl LogWriter {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            // 0600: it holds whatever the workload printed (msb_host::private).
            file: msb_host::private::create_options()
                .append(true)
                .open(path)?,
        })
    }

    pub fn append(&mut self, entry: &LogEntry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).expect("log entry serialises");
        line.push(b'\n');
        self.file.write_all(&line)
    }
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
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        position += n as u64;
        if let Ok(entry) = serde_json::from_str(line.trim_end()) {
            entries.push(entry);
        }
    }
    Ok((entries, position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_incrementally_skipping_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        assert_eq!(read_from(&path, 0).unwrap().0, vec![]);
        let mut w = LogWriter::open(&path).unwrap();
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
}
