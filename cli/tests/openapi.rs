//! The committed OpenAPI document must match the one generated from the server's types.
//! To refresh it: `MSB_UPDATE_OPENAPI=1 cargo test --release -p msb-cli --test openapi`.

#[test]
fn committed_openapi_document_is_current() {
    let generated = msb_cli::api::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("MSB_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale; regenerate it with MSB_UPDATE_OPENAPI=1 cargo test --release -p msb-cli --test openapi"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    for path in [
        "/v1/sandboxes",
        "/v1/sandboxes/{name}/session",
        "/v1/sandboxes/{name}/wait",
        "/v1/health",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the document"
        );
    }
}
