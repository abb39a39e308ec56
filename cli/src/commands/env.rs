//! The workload's environment from `-e KEY=VALUE`, `-e KEY` (the value from msb's own
//! environment) and `--env-file FILE`, so that a secret need not be on msb's command line,
//! where every user of the host can read it in `/proc/<pid>/cmdline`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `-e KEY=VALUE`, or `-e KEY`: the value of `KEY` in msb's environment (an error if unset).
pub fn env_flag(value: &str) -> Result<(String, String), String> {
    env_flag_from(value, |key| std::env::var_os(key))
}

fn env_flag_from(
    value: &str,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<(String, String), String> {
    if let Some((key, value)) = value.split_once('=') {
        if key.is_empty() {
            return Err(format!("expected KEY=VALUE or KEY, got {value:?}"));
        }
        return Ok((key.to_owned(), value.to_owned()));
    }
    if value.is_empty() {
        return Err("expected KEY=VALUE or KEY, got an empty value".to_owned());
    }
    match lookup(value) {
        Some(found) => found
            .into_string()
            .map(|found| (value.to_owned(), found))
            .map_err(|_| format!("{value} in msb's environment is not valid UTF-8")),
        None => Err(format!(
            "{value} is not set in msb's environment (-e {value} takes its value from there)"
        )),
    }
}

/// The pairs of an env file: `KEY=VALUE` lines (the value verbatim, `=` and spaces included),
/// `#` comment lines and blank lines. A bad line is an error naming the file and line.
pub fn parse_env_file(path: &Path, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.split_once('=') {
            Some((key, value)) if !key.is_empty() && !key.contains(char::is_whitespace) => {
                pairs.push((key.to_owned(), value.to_owned()))
            }
            _ => {
                return Err(format!(
                    "{}:{}: expected KEY=VALUE, got {line:?}",
                    path.display(),
                    index + 1
                ))
            }
        }
    }
    Ok(pairs)
}

/// The environment of `--env-file` files (in order), then `-e` flags: a later value of a key
/// replaces an earlier one.
pub fn environment(
    files: &[PathBuf],
    flags: Vec<(String, String)>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--env-file {}: {e}", path.display()))?;
        pairs.extend(parse_env_file(path, &text).map_err(anyhow::Error::msg)?);
    }
    pairs.extend(flags);
    let mut merged: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        match merged.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => merged.push((key, value)),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_takes_its_value_inline_or_from_msbs_environment() {
        let lookup = |key: &str| (key == "TOKEN").then(|| OsString::from("s3cret"));
        assert_eq!(
            env_flag_from("A=b=c", lookup),
            Ok(("A".into(), "b=c".into()))
        );
        assert_eq!(
            env_flag_from("TOKEN", lookup),
            Ok(("TOKEN".into(), "s3cret".into()))
        );
        let unset = env_flag_from("MISSING", lookup).unwrap_err();
        assert!(unset.contains("MISSING is not set"), "{unset}");
        assert!(env_flag_from("=x", lookup).is_err());
        assert!(env_flag_from("", lookup).is_err());
    }

    #[test]
    fn an_env_file_has_pairs_comments_and_blank_lines_and_names_a_bad_line() {
        let path = Path::new("/etc/app.env");
        let text =
            "# database\nDB_URL=postgres://u:p@h/db?x=1\n\n  PORT=8080\r\nEMPTY=\nSPACED= a b \n";
        assert_eq!(
            parse_env_file(path, text).unwrap(),
            vec![
                ("DB_URL".into(), "postgres://u:p@h/db?x=1".into()),
                ("PORT".into(), "8080".into()),
                ("EMPTY".into(), "".into()),
                ("SPACED".into(), " a b ".into()),
            ]
        );
        let e = parse_env_file(path, "A=1\n# ok\nexport B=2\n").unwrap_err();
        assert_eq!(e, "/etc/app.env:3: expected KEY=VALUE, got \"export B=2\"");
        let e = parse_env_file(path, "A=1\nnovalue\n").unwrap_err();
        assert!(e.starts_with("/etc/app.env:2: "), "{e}");
        assert!(parse_env_file(path, "=x\n").is_err());
    }

    #[test]
    fn flags_override_files_and_later_files_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("a.env");
        let second = dir.path().join("b.env");
        std::fs::write(&first, "A=1\nB=1\n").unwrap();
        std::fs::write(&second, "B=2\nC=2\n").unwrap();
        let env = environment(&[first, second], vec![("C".into(), "3".into())]).unwrap();
        assert_eq!(
            env,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "2".into()),
                ("C".into(), "3".into())
            ]
        );
        let missing = environment(&[dir.path().join("none.env")], vec![]).unwrap_err();
        assert!(missing.to_string().starts_with("--env-file "), "{missing}");
    }
}
