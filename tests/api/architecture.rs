//! The module graph of src/ as docs/ARCHITECTURE.md draws it: read from
//! the `crate::` paths of the code itself (outside `#[cfg(test)]`), it must
//! have no cycle, and the document's table must list exactly its edges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn top_level_modules() -> Vec<String> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .expect("read src dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The text with every `#[cfg(test)]` item (a block or a `mod x;`) removed.
fn without_tests(text: &str) -> String {
    let mut code = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        code.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let brace = after.find('{');
        let semi = after.find(';');
        match (brace, semi) {
            (_, Some(s)) if brace.is_none_or(|b| s < b) => rest = &after[s + 1..],
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &after[end..];
            }
            _ => rest = "",
        }
    }
    code.push_str(rest);
    code
}

fn without_comments(code: &str) -> String {
    code.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`,
/// including inside `crate::{a, b::c}` groups.
fn crate_refs(code: &str, modules: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let after = &code[at + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').collect()
        } else {
            vec![after]
        };
        for name in names {
            let ident: String = name
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&ident) {
                found.insert(ident);
            }
        }
    }
    found
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = top_level_modules();
    let mut graph = BTreeMap::new();
    for module in &modules {
        let dir = root().join("src").join(module);
        let mut files = Vec::new();
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(root().join("src").join(format!("{module}.rs")));
        }
        let mut uses = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read source");
            uses.extend(crate_refs(
                &without_comments(&without_tests(&text)),
                &modules,
            ));
        }
        uses.remove(module);
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle through `from`, if there is one (depth-first).
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|m| m == from) {
        let mut cycle = path[at..].to_vec();
        cycle.push(from.to_string());
        return Some(cycle);
    }
    path.push(from.to_string());
    for next in graph.get(from).into_iter().flatten() {
        if let Some(cycle) = cycle_from(graph, next, path) {
            return Some(cycle);
        }
    }
    path.pop();
    None
}

#[test]
fn the_top_level_modules_need_each_other_in_no_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 10, "modules found: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module, &mut Vec::new()) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_architecture_document_lists_exactly_the_module_graph() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("docs");
    let section = doc
        .split("## Modules and what each may use")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the section is in docs/ARCHITECTURE.md");
    let mut documented = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let module = cells[1].trim_matches('`').to_string();
        let uses: BTreeSet<String> = cells[3]
            .split(',')
            .map(|u| u.trim().trim_matches('`').to_string())
            .filter(|u| !u.is_empty() && u != "—")
            .collect();
        documented.insert(module, uses);
    }
    let actual = module_graph();
    let differing: Vec<String> = actual
        .keys()
        .chain(documented.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|m| documented.get(*m) != actual.get(*m))
        .map(|m| {
            format!(
                "{m}: the document says {:?}, src/ uses {:?}",
                documented.get(m),
                actual.get(m)
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "docs/ARCHITECTURE.md's module table is out of date:\n{}",
        differing.join("\n")
    );
}

#[test]
fn no_source_file_outside_src_bin_is_over_600_lines_of_non_test_code() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(root().join("src/bin")))
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).expect("read source");
            let code = without_tests(&text);
            let lines = code.lines().count();
            (lines > MAX_FILE_LINES).then(|| format!("{} ({lines})", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines: {long:?}");
}
