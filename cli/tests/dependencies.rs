//! The client depends on the API contract, the protocol and small leaf crates only: never on
//! the runtime, its isolation backend, libseccomp, the store or msbd. And dependencies point
//! one way: `msb-cli`/`msb-daemon` -> `msb-runtime`/`msb-store`/`msb-telemetry` -> leaves.
//!
//! Read from `cargo metadata`'s resolved graph, normal dependencies only (build and dev
//! dependencies do not end up in the binary).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// Package name -> names of its normal (non-dev, non-build) dependencies, on the platform msb
/// is built for (every other platform's packages are not even downloaded).
fn normal_dependency_graph() -> &'static HashMap<String, Vec<String>> {
    static GRAPH: std::sync::OnceLock<HashMap<String, Vec<String>>> = std::sync::OnceLock::new();
    GRAPH.get_or_init(read_graph)
}

fn read_graph() -> HashMap<String, Vec<String>> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args([
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let name_of: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            let deps = node["deps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|kind| kind["kind"].is_null())
                })
                .map(|dep| name_of[dep["pkg"].as_str().unwrap()].to_owned())
                .collect();
            (name_of[node["id"].as_str().unwrap()].to_owned(), deps)
        })
        .collect()
}

/// Every package `root` links, itself excluded.
fn closure(graph: &HashMap<String, Vec<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_owned()];
    while let Some(package) = stack.pop() {
        for dep in graph.get(&package).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

fn forbidden_in(links: &BTreeSet<String>, forbidden: &[&str]) -> Vec<String> {
    links
        .iter()
        .filter(|p| forbidden.contains(&p.as_str()))
        .cloned()
        .collect()
}

#[test]
fn the_client_links_the_contract_and_protocol_but_no_runtime() {
    let graph = normal_dependency_graph();
    let links = closure(graph, "msb-cli");
    for needed in ["msb-api", "msb-protocol", "msb-host"] {
        assert!(
            links.contains(needed),
            "msb-cli should link {needed}: {links:?}"
        );
    }
    let found = forbidden_in(
        &links,
        &[
            "msb-runtime",
            "msb-namespace",
            "libseccomp",
            "libseccomp-sys",
            "msb-store",
            "msb-daemon",
            "msb-telemetry",
            "duckdb",
            "libduckdb-sys",
        ],
    );
    assert!(found.is_empty(), "msb-cli links {found:?}");
}

#[test]
fn dependencies_point_from_the_binaries_down_to_the_leaves() {
    let graph = normal_dependency_graph();
    // The middle layer never reaches back up to a binary crate.
    for middle in ["msb-runtime", "msb-store", "msb-telemetry"] {
        let found = forbidden_in(&closure(graph, middle), &["msb-cli", "msb-daemon"]);
        assert!(found.is_empty(), "{middle} links {found:?}");
    }
    // The leaves the client shares reach neither the middle layer nor the binaries.
    for leaf in [
        "msb-api",
        "msb-protocol",
        "msb-host",
        "msb-metrics",
        "msb-logging",
    ] {
        let found = forbidden_in(
            &closure(graph, leaf),
            &[
                "msb-cli",
                "msb-daemon",
                "msb-runtime",
                "msb-store",
                "msb-telemetry",
                "msb-namespace",
            ],
        );
        assert!(found.is_empty(), "{leaf} links {found:?}");
    }
}
