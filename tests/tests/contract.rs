//! The API contract against a real msbd: `tests/contract/fuzz.sh` runs schemathesis on the
//! OpenAPI document msbd serves, with valid and invalid requests generated from it, and fails
//! when msbd answers otherwise than the document says (a server error, an undocumented status
//! or content type, a body that does not match its schema, an invalid request accepted, or a
//! valid one refused). Skipped, with the reason printed, without root or schemathesis
//! (`.ci/run` installs it into /var/tmp/msb-schemathesis).

use std::path::Path;
use std::process::Command;

#[test]
fn msbd_answers_as_its_openapi_document_says() {
    if !msb_e2e::require_root() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contract/fuzz.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("MSB_BIN_DIR", msb_e2e::bin_dir())
        .output()
        .expect("running fuzz.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(77) {
        eprintln!("skipped: {}", stderr.trim());
        return;
    }
    assert!(
        output.status.success(),
        "fuzz.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("operations that refused most valid inputs: 0 of"),
        "{stdout}"
    );
    // The per-operation tally (valid inputs generated and refused), for the record.
    let tally = stdout.lines().skip_while(|l| !l.starts_with("operation "));
    eprintln!("{}", tally.collect::<Vec<_>>().join("\n"));
}
