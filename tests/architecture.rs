//! The layout is the architecture (docs/architecture.md), and these checks keep it so:
//! - the deployed handler's normal dependencies reach no emulator, test or build-tool crate;
//! - inside the product crate, each top-level module uses only the layers below it, and the
//!   pipeline reaches the outside only through its ports, never through `adapters`;
//! - only the configuration and the process entry points read the environment;
//! - no source file exceeds 800 lines and no function 120;
//! - no two modules (files) import each other, directly or through others.
//!
//! The import graph is read from the source: every `crate::a::b` and `super::` path outside
//! `#[cfg(test)]` code is an edge from the file's module to the module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Each layer unit of the product crate and its layer: a unit is a top-level module, or a
/// submodule listed on its own (`pipeline::ports`); a module belongs to the longest unit that
/// names it and may use only units of a strictly lower layer (and its own unit). `adapters` and
/// `pipeline` share a layer, so neither may use the other: both meet at the ports below them.
const LAYERS: &[(&str, u8)] = &[
    ("settings", 0),
    ("telemetry", 0),
    ("http_retry", 0),
    ("auth", 1),
    ("billing", 2),
    ("contracts", 3),
    ("pipeline::ports", 4),
    ("adapters", 5),
    ("pipeline", 5),
    ("config", 6),
    ("planner", 7),
    ("app", 7),
    ("usecases", 8),
    ("functions", 9),
    ("cli", 10),
];

/// Crates that must never link into the deployed handler.
const NOT_DEPLOYED: &[&str] = &[
    "partner-billing-local",
    "python-tools",
    "test-support",
    "xtask",
];

/// The `[dependencies]` table of a manifest (names only; path dependencies with their path).
fn normal_dependencies(manifest: &Path) -> Vec<(String, Option<PathBuf>)> {
    let text = fs::read_to_string(manifest).unwrap();
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.']).next().unwrap().trim().to_string();
        out.push((name, None));
    }
    // Resolve workspace path dependencies through the workspace table.
    let ws = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for (name, path) in &mut out {
        let prefix = format!("{name} = {{ path = \"");
        if let Some(l) = ws.lines().find(|l| l.starts_with(&prefix)) {
            let p = l[prefix.len()..].split('"').next().unwrap();
            *path = Some(root().join(p));
        }
    }
    out
}

#[test]
fn deployed_handler_links_no_emulator_test_or_tool_crate() {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root().join("Cargo.toml")];
    while let Some(manifest) = todo.pop() {
        for (name, path) in normal_dependencies(&manifest) {
            assert!(
                !NOT_DEPLOYED.contains(&name.as_str()),
                "{} depends on {name}, which must not reach the deployed handler",
                manifest.display()
            );
            if let Some(p) = path {
                if seen.insert(name) {
                    todo.push(p.join("Cargo.toml"));
                }
            }
        }
    }
    assert!(seen.contains("functions-runtime"), "walked: {seen:?}");
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The longest known module that `path` (segments after `crate::`) names.
fn resolve(path: &[&str], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Module → modules it uses (production code only).
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph = BTreeMap::new();
    for f in &files {
        let me = module_of(src, f);
        let text = fs::read_to_string(f).unwrap();
        // Unit tests sit at the end of a file behind `#[cfg(test)]`; they may use anything.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut uses = BTreeSet::new();
        for (marker, base) in [("crate::", Vec::new()), ("super::", parent_of(&me))] {
            for (i, _) in code.match_indices(marker) {
                if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let rest = &code[i + marker.len()..];
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                let mut path: Vec<&str> = base.iter().map(String::as_str).collect();
                path.extend(rest[..end].split("::").filter(|s| !s.is_empty()));
                if let Some(target) = resolve(&path, &modules) {
                    if target != me && !target.is_empty() {
                        uses.insert(target);
                    }
                }
            }
        }
        graph.insert(me, uses);
    }
    graph
}

/// The module `super::` refers to from module `me`.
fn parent_of(me: &str) -> Vec<String> {
    let mut parts: Vec<String> = me.split("::").map(str::to_string).collect();
    parts.pop();
    parts
}

/// The layer unit of module `m`: the longest `LAYERS` entry that is `m` or a parent of it.
fn unit(m: &str) -> (&'static str, u8) {
    LAYERS
        .iter()
        .filter(|(name, _)| m == *name || m.starts_with(&format!("{name}::")))
        .max_by_key(|(name, _)| name.len())
        .copied()
        .unwrap_or_else(|| panic!("module {m} has no layer in tests/architecture.rs"))
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let graph = import_graph(&root().join("src"));
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        if from.is_empty() {
            continue;
        }
        let (from_unit, from_layer) = unit(from);
        for to in tos {
            let (to_unit, to_layer) = unit(to);
            if from_unit != to_unit && to_layer >= from_layer {
                wrong.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering: {wrong:#?}");
}

/// The pipeline knows its services through `pipeline::ports` only: no pipeline module imports
/// an adapter.
#[test]
fn the_pipeline_never_imports_adapters() {
    let src = root().join("src");
    let graph = import_graph(&src);
    let mut wrong = Vec::new();
    for (from, tos) in graph.iter().filter(|(m, _)| top(m) == "pipeline") {
        for to in tos.iter().filter(|t| top(t) == "adapters") {
            wrong.push(format!("{from} -> {to}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the pipeline imports adapters: {wrong:#?}"
    );
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap()
}

#[test]
fn no_module_import_cycles() {
    for src in ["src", "crates/functions-runtime/src", "crates/local/src"] {
        let graph = import_graph(&root().join(src));
        // Depth-first search with colours; a back edge is a cycle.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        fn visit<'a>(
            m: &'a str,
            g: &'a BTreeMap<String, BTreeSet<String>>,
            state: &mut BTreeMap<&'a str, u8>,
            stack: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            state.insert(m, 1);
            stack.push(m);
            for n in g.get(m).into_iter().flatten() {
                match state.get(n.as_str()) {
                    Some(1) => {
                        let at = stack.iter().position(|s| *s == n).unwrap();
                        let mut cycle: Vec<String> =
                            stack[at..].iter().map(|s| s.to_string()).collect();
                        cycle.push(n.clone());
                        return Some(cycle);
                    }
                    Some(_) => {}
                    None => {
                        if let Some(c) = visit(n, g, state, stack) {
                            return Some(c);
                        }
                    }
                }
            }
            stack.pop();
            state.insert(m, 2);
            None
        }
        for m in graph.keys() {
            if !state.contains_key(m.as_str()) {
                let mut stack = Vec::new();
                if let Some(cycle) = visit(m, &graph, &mut state, &mut stack) {
                    panic!("{src}: import cycle {}", cycle.join(" -> "));
                }
            }
        }
    }
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    // The checker itself must catch what it exists to catch.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs::create_dir_all(src.join("a")).unwrap();
    fs::write(src.join("lib.rs"), "pub mod a;\n").unwrap();
    fs::write(src.join("a/mod.rs"), "pub mod x;\npub mod y;\n").unwrap();
    fs::write(src.join("a/x.rs"), "use super::y::Y;\npub struct X;\n").unwrap();
    fs::write(
        src.join("a/y.rs"),
        "use crate::a::x::X;\npub struct Y;\n#[cfg(test)]\nuse crate::a;\n",
    )
    .unwrap();
    let g = import_graph(src);
    assert!(g["a::x"].contains("a::y"), "{g:?}");
    assert!(g["a::y"].contains("a::x"), "{g:?}");
}

/// Where the product reads the environment: the settings table and `config` (app settings to
/// typed values, secrets included), the process entry point `main.rs`, logging set-up, and the
/// `export` command's entry (`cli/mod.rs`), which is a process entry point too: it gathers its
/// settings from flags and the environment into the map `config` loads. Adapters get values.
const ENVIRONMENT_READERS: &[&str] = &[
    "src/config/",
    "src/settings.rs",
    "src/main.rs",
    "src/telemetry.rs",
    "src/cli/mod.rs",
];

#[test]
fn only_config_and_entry_points_read_the_environment() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if ENVIRONMENT_READERS.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let text = fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            if !line.trim_start().starts_with("//") && line.contains("env::var") {
                wrong.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "read settings in config and pass values: {wrong:#?}"
    );
}

/// Largest source file, in lines.
const MAX_FILE_LINES: usize = 800;
/// Longest function, in lines from its signature to its closing brace.
const MAX_FN_LINES: usize = 120;

/// Files exempt from the size limits while their owners reshape them; each entry goes when
/// its file is within the limits.
const SIZE_EXEMPT_FILES: &[&str] = &[];

/// Every `.rs` file of the workspace (build output, dependencies and hidden folders aside).
fn workspace_rust_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy();
            if p.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                    walk(&p, out);
                }
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out
}

/// Each function with a body in `text`: its name, first line (1-based) and length in lines,
/// from the signature to the closing brace at the signature's indentation.
fn function_lengths(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let mut rest = trimmed;
        for prefix in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        let Some(sig) = rest.strip_prefix("fn ") else {
            continue;
        };
        let name: String = sig
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // A declaration without a body ends in `;` before any `{`.
        let opener = lines[i..]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with('{') || l.ends_with(';') || l.ends_with('}'));
        if opener.is_none_or(|l| l.ends_with(';')) {
            continue;
        }
        let close = format!("{indent}}}");
        let end = if line.trim_end().ends_with('}') {
            Some(i)
        } else {
            (i + 1..lines.len()).find(|&j| lines[j].trim_end() == close)
        };
        if let Some(end) = end {
            out.push((name, i + 1, end - i + 1));
        }
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let mut wrong = Vec::new();
    for file in workspace_rust_files() {
        let rel = file
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if SIZE_EXEMPT_FILES.contains(&rel.as_str()) {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            wrong.push(format!("{rel}: {n} lines (at most {MAX_FILE_LINES})"));
        }
        for (name, at, len) in function_lengths(&text) {
            if len > MAX_FN_LINES {
                wrong.push(format!(
                    "{rel}:{at}: fn {name} has {len} lines (at most {MAX_FN_LINES})"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "split these: {wrong:#?}");
}

#[test]
fn the_size_check_measures_functions() {
    let text = "fn a() {\n    x();\n}\n\ntrait T {\n    fn decl(&self);\n    fn body(&self) {\n        y();\n    }\n}\nfn one() {}\n";
    let got = function_lengths(text);
    assert_eq!(
        got,
        vec![
            ("a".to_string(), 1, 3),
            ("body".to_string(), 7, 3),
            ("one".to_string(), 11, 1)
        ]
    );
}
