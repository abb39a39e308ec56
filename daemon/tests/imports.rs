//! msbd's files import one another without a loop: dependencies point one way (routes and the
//! background work -> the service layer -> state and leaves), so each file can be read, and
//! tested, knowing only what is below it. A `use` (or path) naming `crate::` or `super::` is an
//! edge from the file to the file of the module it names; test files and a file's own test
//! module are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of each source file (`service/lifecycle.rs` -> `service::lifecycle`).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![src.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().unwrap() != "bin" {
                    pending.push(path);
                }
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "tests") {
                continue;
            }
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The source without its `#[cfg(test)]` module.
fn without_tests(source: &str) -> &str {
    source
        .find("#[cfg(test)]\nmod tests")
        .map_or(source, |at| &source[..at])
}

/// The known module a path (as segments from the crate root) lands in: its longest prefix.
fn resolve(known: &BTreeMap<String, String>, segments: &[&str]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| known.contains_key(m))
}

#[test]
fn msbds_files_import_each_other_without_a_loop() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, source) in &known {
        let own: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
        let is_parent = source.contains("\npub mod ") || source.contains("\nmod ");
        let base: Vec<&str> = if is_parent || module.is_empty() {
            own.clone()
        } else {
            own[..own.len().saturating_sub(1)].to_vec()
        };
        let text = without_tests(source);
        for (prefix, root) in [("crate::", Vec::new()), ("super::", base.clone())] {
            for (at, _) in text.match_indices(prefix) {
                let rest = &text[at + prefix.len()..];
                let path: Vec<&str> = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|s| {
                        !s.is_empty()
                            && s.chars()
                                .all(|c| c.is_lowercase() || c == '_' || c.is_ascii_digit())
                    })
                    .collect();
                let mut segments = root.clone();
                if prefix == "super::" && is_parent && !module.is_empty() {
                    segments.pop();
                }
                segments.extend(path);
                if let Some(target) = resolve(&known, &segments) {
                    if &target != module && !target.is_empty() {
                        edges.entry(module.clone()).or_default().insert(target);
                    }
                }
            }
        }
    }
    // Depth-first search for a cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in known.keys() {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            panic!("import loop: {}", cycle.join(" -> "));
        }
    }
    // The check sees the layering it guards: routes use the service, never the other way.
    assert!(
        edges["routes::lifecycle"].contains("service::lifecycle"),
        "{edges:?}"
    );
    assert!(edges["service::lifecycle"].contains("state"), "{edges:?}");
}
