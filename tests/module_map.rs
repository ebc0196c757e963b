//! The runtime crate's modules depend only downward: no module imports a
//! module that imports it back, directly or through others. This test
//! reads each module's code (its `#[cfg(test)]` part, its `tests.rs` and
//! its comments left out) and checks that the graph of `crate::<module>`
//! references has no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name to the modules its non-test code names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("seamless/src");
    let mut graph = BTreeMap::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            for sub in std::fs::read_dir(&path).unwrap() {
                let sub = sub.unwrap().path();
                if sub.file_name().is_some_and(|n| n != "tests.rs") {
                    files.push((name.clone(), sub));
                }
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            files.push((name, path));
        }
    }
    for (module, path) in files {
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // Code only: not the tests, not comments (doc links name modules
        // without importing them).
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.as_str();
        let names: &mut BTreeSet<String> = graph.entry(module.clone()).or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let mut add = |word: &str| {
                let word: String = word
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !word.is_empty() && word != module {
                    names.insert(word);
                }
            };
            if let Some(list) = rest.strip_prefix('{') {
                let list = &list[..list.find('}').unwrap_or(list.len())];
                list.split(',').for_each(|w| add(w.trim()));
            } else {
                add(rest);
            }
        }
    }
    graph
}

#[test]
fn the_runtime_modules_have_no_cycle() {
    let graph = graph();
    assert!(graph.len() > 10, "modules found: {:?}", graph.keys());
    // Depth-first search; a module met again on the current path closes a
    // cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(module) {
            return;
        }
        if let Some(at) = path.iter().position(|m| m == module) {
            panic!("module cycle: {} -> {module}", path[at..].join(" -> "));
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(next, graph, path, done);
            }
        }
        path.pop();
        done.insert(module.to_owned());
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_leaf_modules_import_nothing_of_the_crate() {
    let graph = graph();
    for leaf in ["sys", "config", "error", "signals", "procfs", "shutdown"] {
        assert_eq!(
            graph[leaf],
            BTreeSet::new(),
            "{leaf} imports {:?}",
            graph[leaf]
        );
    }
}
