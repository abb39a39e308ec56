//! The committed OpenAPI document must match the one generated from the server's types.
//! To refresh it: `MSB_UPDATE_OPENAPI=1 cargo test --release -p msb-api --test openapi`.

#[test]
fn committed_openapi_document_is_current() {
    let generated = msb_api::openapi_json();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    if std::env::var_os("MSB_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale; regenerate it with MSB_UPDATE_OPENAPI=1 cargo test --release -p msb-api --test openapi"
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

/// Clients generated from the document name their methods after operation ids: each is unique.
#[test]
fn operation_ids_are_unique() {
    let doc: serde_json::Value = serde_json::from_str(&msb_api::openapi_json()).unwrap();
    let mut ids = Vec::new();
    for (_, item) in doc["paths"].as_object().unwrap() {
        for (_, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "duplicate operation ids: {ids:?}");
    assert_eq!(count, msb_api::operations::operations().len());
}
