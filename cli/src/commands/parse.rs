//! Parsers for CLI flag values; each error names the flag's expected form.

use std::path::PathBuf;
use std::time::Duration;

use msb_api::config::{VolumeMount, MAX_MEMORY_MIB, MAX_QUOTA_MIB, MIN_MEMORY_MIB};

/// `512M`, `1G`, `1.5G`, `256MiB`, or a bare number of MiB.
pub fn memory_mib(value: &str) -> Result<u64, String> {
    let mib = mib_of(value, "memory size")?;
    if mib > MAX_MEMORY_MIB as f64 {
        return Err(format!(
            "memory size {value:?} is too large (at most {MAX_MEMORY_MIB} MiB)"
        ));
    }
    if mib < MIN_MEMORY_MIB as f64 {
        return Err(format!(
            "memory size {value:?} is too small (at least {MIN_MEMORY_MIB} MiB)"
        ));
    }
    Ok(mib as u64)
}

/// A disk size: `512M`, `10G`, `1T`, or a bare number of MiB (its bounds are the API's).
pub fn size_mib(value: &str) -> Result<u64, String> {
    let mib = mib_of(value, "size")?;
    if mib > (u64::MAX >> 20) as f64 {
        return Err(format!("size {value:?} is too large"));
    }
    Ok(mib as u64)
}

/// A number with an optional K/M/G/T unit (binary), as MiB rounded; finite and not negative.
fn mib_of(value: &str, what: &str) -> Result<f64, String> {
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid {what} {value:?} (try 512M, 1G or a number of MiB)"))?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mi" | "mib" => 1.0,
        "g" | "gb" | "gi" | "gib" => 1024.0,
        "t" | "tb" | "ti" | "tib" => 1024.0 * 1024.0,
        "k" | "kb" | "ki" | "kib" => 1.0 / 1024.0,
        _ => {
            return Err(format!(
                "invalid unit in {what} {value:?} (use K, M, G or T)"
            ))
        }
    };
    let mib = (number * factor).round();
    if !mib.is_finite() {
        return Err(format!("{what} {value:?} is too large"));
    }
    Ok(mib)
}

/// `500ms`, `2s`, `1m`, `1h30m`, or bare seconds.
pub fn duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(v)
        .map_err(|_| format!("invalid duration {value:?} (try 30s, 5m, 1h or a number of seconds)"))
}

/// Whole seconds, at least one.
pub fn duration_secs(value: &str) -> Result<u64, String> {
    let d = duration(value)?;
    if d < Duration::from_secs(1) {
        return Err(format!("duration {value:?} must be at least 1s"));
    }
    Ok(d.as_secs())
}

/// A point in time as ms since the epoch: an RFC 3339 time, or a duration ago (`10m`).
pub fn time_ms(value: &str) -> Result<i64, String> {
    let now = std::time::SystemTime::now();
    let at = match humantime::parse_rfc3339_weak(value) {
        Ok(time) => time,
        Err(_) => {
            let ago = duration(value).map_err(|_| {
                format!(
                    "invalid time {value:?} (try 10m for ten minutes ago, or 2026-01-02T03:04:05Z)"
                )
            })?;
            now.checked_sub(ago)
                .ok_or_else(|| format!("{value:?} is too long ago"))?
        }
    };
    if at > now + Duration::from_secs(60) {
        return Err(format!("{value:?} is in the future"));
    }
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("{value:?} is before 1970"))
}

/// A sampling interval in ms: `0` disables, otherwise at least 100 ms.
pub fn metrics_interval_ms(value: &str) -> Result<u64, String> {
    let ms = duration(value)?.as_millis() as u64;
    if ms != 0 && ms < 100 {
        return Err(format!(
            "interval {value:?} is shorter than 100ms (use 0 to disable metrics)"
        ));
    }
    Ok(ms)
}

pub fn cpus(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(c) if c.is_finite() && c > 0.0 && c <= 1024.0 => Ok(c),
        _ => Err(format!(
            "invalid CPU count {value:?} (a positive number, e.g. 1 or 0.5)"
        )),
    }
}

/// `KEY=VALUE`.
pub fn key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {value:?}")),
    }
}

/// `HOST:GUEST[:ro|:rw][,quota=MiB]` (the quota also as `HOST:GUEST,quota=MiB`).
/// A `-p` value, checked with msb-net's parser (the daemon parses it again).
pub fn published_port(value: &str) -> Result<msb_net::PortSpec, String> {
    value
        .parse()
        .map_err(|e| format!("invalid published port {value:?}: {e}"))
}

/// A `--net-rule` value, checked with msb-net's parser and kept as written.
pub fn net_rule(value: &str) -> Result<String, String> {
    value
        .parse::<msb_net::Rule>()
        .map(|_| value.to_owned())
        .map_err(|e| format!("invalid network rule {value:?}: {e}"))
}

pub fn volume(value: &str) -> Result<VolumeMount, String> {
    const FORM: &str = "HOST:GUEST[:ro][,quota=MiB]";
    let (mount, options) = match value.split_once(',') {
        Some((mount, options)) => (mount, Some(options)),
        None => (value, None),
    };
    let mut quota_mib = None;
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        match option.split_once('=') {
            Some(("quota", mib)) => {
                let mib: u64 = mib.parse().map_err(|_| {
                    format!("quota={mib:?} in {value:?}: expected a whole number of MiB")
                })?;
                if !(1..=MAX_QUOTA_MIB).contains(&mib) {
                    return Err(format!(
                        "quota={mib} in {value:?}: must be 1 to {MAX_QUOTA_MIB} MiB"
                    ));
                }
                quota_mib = Some(mib);
            }
            _ => {
                return Err(format!(
                    "unknown volume option {option:?} in {value:?} (expected {FORM})"
                ))
            }
        }
    }
    let parts: Vec<&str> = mount.split(':').collect();
    let (host, guest, readonly) = match parts.as_slice() {
        [host, guest] => (host, guest, false),
        [host, guest, "ro"] => (host, guest, true),
        [host, guest, "rw"] => (host, guest, false),
        _ => return Err(format!("expected {FORM}, got {value:?}")),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(format!("expected {FORM}, got {value:?}"));
    }
    if !guest.starts_with('/') {
        return Err(format!("volume guest path {guest:?} must be absolute"));
    }
    // A bare name (no `/`, not `.` or `..`) is a named volume; anything else is a host path.
    if !host.contains('/') && *host != "." && *host != ".." {
        msb_api::config::validate_name(host)
            .map_err(|_| format!("{host:?} is not a volume name (letters, digits, '.', '_', '-') nor a path (give ./{host} for a directory here)"))?;
        return Ok(VolumeMount {
            host: PathBuf::new(),
            volume: Some((*host).to_owned()),
            kind: None,
            guest: PathBuf::from(guest),
            readonly,
            quota_mib,
        });
    }
    let host =
        std::fs::canonicalize(host).map_err(|e| format!("volume host path {host:?}: {e}"))?;
    if !guest.starts_with('/') {
        return Err(format!("volume guest path {guest:?} must be absolute"));
    }
    Ok(VolumeMount {
        host,
        volume: None,
        kind: None,
        guest: PathBuf::from(guest),
        readonly,
        quota_mib,
    })
}

/// `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn signal(value: &str) -> Result<i32, String> {
    if let Ok(n) = value.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(format!("signal number {n} is out of range 1-64"));
    }
    let upper = value.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| format!("unknown signal {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(memory_mib("512M"), Ok(512));
        assert_eq!(memory_mib("1G"), Ok(1024));
        assert_eq!(memory_mib("1.5g"), Ok(1536));
        assert_eq!(memory_mib("256"), Ok(256));
        assert!(memory_mib("lots").is_err());
        assert!(memory_mib("5X").is_err());
        assert!(memory_mib("0").is_err());
        assert!(memory_mib("15").is_err());
        assert_eq!(memory_mib("16"), Ok(16));
        // Once multiplied into bytes by a 32-bit shift this wrapped to 16 MiB.
        let wrapped = memory_mib("17592186044432").unwrap_err();
        assert!(wrapped.contains("too large"), "{wrapped}");
        assert!(memory_mib("1e400").is_err());
        assert!(memory_mib("5000000G").is_err());
    }

    #[test]
    fn durations_and_signals() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(duration_secs("1m"), Ok(60));
        assert!(duration_secs("10ms").is_err());
        assert!(duration("soon").is_err());
        assert_eq!(signal("TERM"), Ok(15));
        assert_eq!(signal("SIGKILL"), Ok(9));
        assert_eq!(signal("hup"), Ok(1));
        assert_eq!(signal("9"), Ok(9));
        assert!(signal("99").is_err());
        assert!(signal("NOPE").is_err());
    }

    #[test]
    fn key_values_and_volumes() {
        assert_eq!(key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(key_value("=x").is_err());
        assert!(key_value("novalue").is_err());
        let v = volume("/tmp:/data:ro").unwrap();
        assert!(v.readonly);
        assert_eq!(v.guest, PathBuf::from("/data"));
        assert!(volume("/tmp:relative").is_err());
        assert!(volume("/nonexistent-msb:/x").is_err());
        assert!(volume("/tmp:/x:rx").is_err());
        assert_eq!(volume("/tmp:/x:ro,quota=64").unwrap().quota_mib, Some(64));
        assert_eq!(volume("/tmp:/x,quota=1").unwrap().quota_mib, Some(1));
        assert_eq!(volume("/tmp:/x").unwrap().quota_mib, None);
        for bad in [
            "/tmp:/x,quota=0",
            "/tmp:/x,quota=-1",
            "/tmp:/x,quota=1G",
            "/tmp:/x,size=3",
        ] {
            let e = volume(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
