//! The module map of `ARCHITECTURE.md` is the code's: for every module of
//! the runtime crate, the `imports` column of its row names exactly the
//! modules its code names (`crate::<module>`), no more and no fewer; each
//! module imports only modules below its row; and the graph has no cycle.
//!
//! Every line of every file is read, except tests: comments, the contents
//! of string and character literals, and each item marked `#[cfg(test)]`
//! (a `mod tests { .. }` found by matching its braces, a test-only `fn`,
//! `impl` or `use`, a `mod tests;` and its file) are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

// ------------------------------------------------------------- the code

/// `text` with comments blanked and literals emptied (`"..."` becomes
/// `""`, `'x'` becomes `''`), line breaks kept: what is left is code whose
/// braces match.
fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            // Block comments nest.
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
            && matches!(next, Some('"' | '#'))
            && c[i + 1..].iter().find(|&&ch| ch != '#') == Some(&'"')
        {
            // A raw string: r"..", r#".."#, br#".."#.
            let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
            i += 1 + hashes + 1;
            let end: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let end: Vec<char> = end.chars().collect();
            while i < c.len() && !c[i..].starts_with(&end) {
                blank(&mut out, c[i]);
                i += 1;
            }
            i += end.len();
            out.push_str("\"\"");
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\u{..}'), not a lifetime.
            i += 1;
            if c[i] == '\\' {
                i += 1;
            }
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("''");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `code` (from [`code_only`]) without the items marked `#[cfg(test)]`;
/// the names of the test-only `mod NAME;` files it declares.
fn without_tests(code: &str) -> (String, BTreeSet<String>) {
    const MARK: &str = "#[cfg(test)]";
    let mut kept = String::new();
    let mut test_files = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find(MARK) {
        kept.push_str(&rest[..at]);
        let item = &rest[at + MARK.len()..];
        // The item ends at a `;` outside any bracket, or where its first
        // block closes.
        let mut depth = 0i32;
        let mut end = item.len();
        for (i, ch) in item.char_indices() {
            match ch {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' => depth -= 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        // Other attributes of the item are inside its text: `#[..]` is a
        // bracket, closed before the item's end.
        let words: Vec<&str> = item[..end]
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ';'))
            .filter(|w| !w.is_empty())
            .collect();
        if let Some(at) = words.iter().position(|w| *w == "mod") {
            if let Some(name) = words.get(at + 1).and_then(|w| w.strip_suffix(';')) {
                test_files.insert(name.to_owned());
            } else if words.get(at + 2) == Some(&";") {
                test_files.insert(words[at + 1].to_owned());
            }
        }
        // Keep the line count: a blanked item.
        kept.extend(item[..end].chars().filter(|&c| c == '\n'));
        rest = &item[end..];
    }
    kept.push_str(rest);
    (kept, test_files)
}

/// The modules `code` names as `crate::<module>`, `crate::{a, b::c}` or
/// `$crate::<module>`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let word = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `mycrate::`, not `crate::`
        }
        let Some(group) = rest.trim_start().strip_prefix('{') else {
            names.insert(word(rest));
            continue;
        };
        // One name per entry of the group, at its top level.
        let (mut depth, mut entry_start) = (0, 0);
        for (i, ch) in group.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    names.insert(word(&group[entry_start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    names.insert(word(&group[entry_start..i]));
                    entry_start = i + 1;
                }
                _ => {}
            }
        }
    }
    names.remove("");
    names
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Module name to the modules its non-test code names.
fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("seamless/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut read = BTreeMap::new();
    let mut test_files = BTreeSet::new();
    for path in &files {
        let (code, tests) = without_tests(&code_only(&std::fs::read_to_string(path).unwrap()));
        let dir = path.parent().unwrap();
        for name in tests {
            test_files.insert(dir.join(format!("{name}.rs")));
            test_files.insert(dir.join(name).join("mod.rs"));
        }
        read.insert(path.clone(), code);
    }
    let mut graph = Graph::new();
    for (path, code) in read {
        if test_files.contains(&path) {
            continue;
        }
        // The module is the file's first component under src/.
        let first = path
            .strip_prefix(&src)
            .unwrap()
            .components()
            .next()
            .unwrap();
        let module = Path::new(first.as_os_str())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if module == "lib" {
            continue; // the crate root declares the modules
        }
        let names = graph.entry(module.clone()).or_default();
        names.extend(named_modules(&code).into_iter().filter(|n| *n != module));
    }
    // `crate::Builder` and the like name the crate root's re-exports, not
    // a module.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for names in graph.values_mut() {
        names.retain(|n| modules.contains(n));
    }
    graph
}

// --------------------------------------------------------------- the map

/// The rows of `ARCHITECTURE.md`'s module table, top down: the modules of
/// each row and the modules its `imports` column names.
fn table() -> Vec<(Vec<String>, BTreeSet<String>)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Modules of `seamless`"))
        .expect("ARCHITECTURE.md has a section \"Modules of `seamless`\"");
    // `a`, `b` (..): the backticked names outside parentheses.
    let names = |cell: &str| -> Vec<String> {
        let mut plain = String::new();
        let mut depth = 0;
        for ch in cell.chars() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ if depth == 0 => plain.push(ch),
                _ => {}
            }
        }
        plain
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let rows: Vec<_> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 3, "a row of three cells: {l}");
            (names(cells[0]), names(cells[2]).into_iter().collect())
        })
        .collect();
    assert!(!rows.is_empty(), "the module table is found");
    rows
}

// ----------------------------------------------------------------- tests

#[test]
fn the_module_table_of_architecture_md_names_each_modules_imports() {
    let graph = graph();
    let table = table();
    let mut wrong = Vec::new();
    let mut listed = BTreeSet::new();
    for (modules, imports) in &table {
        for module in modules {
            listed.insert(module.clone());
            let Some(found) = graph.get(module) else {
                wrong.push(format!("`{module}` has a row but no file"));
                continue;
            };
            for missing in found.difference(imports) {
                wrong.push(format!(
                    "`{module}` imports `{missing}`: its row does not say so"
                ));
            }
            for extra in imports.difference(found) {
                wrong.push(format!(
                    "`{module}`'s row says it imports `{extra}`: it does not"
                ));
            }
        }
    }
    for module in graph.keys().filter(|m| !listed.contains(*m)) {
        wrong.push(format!("`{module}` has no row"));
    }
    assert!(
        wrong.is_empty(),
        "ARCHITECTURE.md's module table is out of date:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn each_module_imports_only_modules_below_its_row() {
    let graph = graph();
    let table = table();
    let row_of: BTreeMap<&str, usize> = table
        .iter()
        .enumerate()
        .flat_map(|(row, (modules, _))| modules.iter().map(move |m| (m.as_str(), row)))
        .collect();
    let mut upward = Vec::new();
    for (module, imports) in &graph {
        let Some(&row) = row_of.get(module.as_str()) else {
            continue; // reported by the table's test
        };
        for import in imports {
            if row_of.get(import.as_str()).is_some_and(|&r| r <= row) {
                upward.push(format!("`{module}` imports `{import}`, not below it"));
            }
        }
    }
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}

#[test]
fn the_runtime_modules_have_no_cycle() {
    let graph = graph();
    assert!(graph.len() > 10, "modules found: {:?}", graph.keys());
    // Depth-first search; a module met again on the current path closes a
    // cycle.
    fn visit(module: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
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

/// The reader itself: every line but the tests', whatever the literals
/// and comments hold.
#[test]
fn the_reader_skips_tests_comments_and_literals_and_nothing_else() {
    let file = r####"
use crate::{alpha, beta::{Gamma, delta}, epsilon::Zeta};
// crate::commented
/* crate::blocked /* nested */ crate::still */
const BRACE: &str = "{ crate::quoted";
const RAW: &str = r#"} crate::raw "# ;
const CH: char = '{';
fn lifetime<'a>(x: &'a str) -> &'a str { x }

#[cfg(test)]
use crate::test_only_use;

#[cfg(test)]
mod tests {
    use crate::in_tests;
    fn f() { let _ = "}"; let _ = '}'; }
}

#[cfg(test)]
impl Thing for crate::test_only_impl::X {}

#[cfg(test)]
mod more_tests;

fn after() { crate::after_the_tests::f(); $crate::via_macro::g(); mycrate::not_ours(); }
pub(crate) fn visible() {}
"####;
    let (code, test_files) = without_tests(&code_only(file));
    assert_eq!(code.lines().count(), file.lines().count(), "lines kept");
    let expected: BTreeSet<String> = ["alpha", "beta", "epsilon", "after_the_tests", "via_macro"]
        .map(str::to_owned)
        .into();
    assert_eq!(named_modules(&code), expected, "{code}");
    assert_eq!(test_files, ["more_tests".to_owned()].into());
}
