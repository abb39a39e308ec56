//! Random identifiers for sandboxes and runs.

use std::io::Read;

/// 16 lowercase hex characters from the kernel's random source.
pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A readable name for an unnamed (ephemeral) sandbox.
pub fn ephemeral_name() -> String {
    format!("run-{}", &random_id()[..10])
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_and_distinct() {
        let (a, b) = (super::random_id(), super::random_id());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
