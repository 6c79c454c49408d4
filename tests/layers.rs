//! The layer rules of ARCHITECTURE.md that Rust's visibility cannot state, checked on the
//! source tree: which top-level modules each module may name (`crate::X`), no concrete
//! backend in the models or the method layer, no executor in the models, no clap outside
//! `src/cli/`. Test code (from a file's first `#[cfg(test)]` on, and a `tests.rs` its
//! `mod.rs` declares `#[cfg(test)]`) is exempt: a unit test may pick the CPU backend. Every
//! rule is also run on a synthetic tree that breaks it, so a rule that no longer fires fails
//! here too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it may name. Bottom up, as ARCHITECTURE.md's
/// layer table; a module may always name itself.
const MAY_USE: &[(&str, &[&str])] = &[
    ("tensor", &[]),
    ("atomic_file", &[]),
    // The fault hooks (tests' free-space limit).
    ("disk_space", &["backend"]),
    ("graph", &["tensor"]),
    ("blur", &["tensor"]),
    ("metrics", &["tensor"]),
    ("backend", &["tensor", "graph", "blur"]),
    // The op and byte counters are graph-generic functions in models/unet/{cost,traffic}.rs.
    ("trace", &["tensor", "graph", "models", "atomic_file"]),
    ("exec", &["tensor", "graph", "backend", "trace"]),
    ("weights", &["tensor", "atomic_file", "disk_space"]),
    ("models", &["tensor", "graph"]),
    ("check", &["tensor", "graph", "backend", "exec", "models"]),
    // The method layer, in METHOD.md's order.
    ("degrade", &["tensor", "blur"]),
    (
        "dblm",
        &["tensor", "graph", "backend", "exec", "models", "blur"],
    ),
    (
        "dsst",
        &["tensor", "graph", "backend", "exec", "diffusion", "blur"],
    ),
    ("diffusion", &[]),
    (
        "sampler",
        &["tensor", "graph", "backend", "exec", "diffusion"],
    ),
    (
        "restore",
        &[
            "tensor",
            "graph",
            "backend",
            "exec",
            "models",
            "weights",
            "atomic_file",
            // The batch loop (`restore/workers.rs`): the free-space check before a batch's
            // outputs, a trace slice per batch.
            "disk_space",
            "trace",
            "degrade",
            "dblm",
            "dsst",
            "diffusion",
            "sampler",
            // The run report holds the whole-photo report of `face::photo_run`.
            "face",
        ],
    ),
    (
        "face",
        &[
            "tensor",
            "graph",
            "backend",
            "exec",
            "models",
            "weights",
            "atomic_file",
            "disk_space",
            "degrade",
            "restore",
        ],
    ),
    ("report", &["atomic_file", "degrade", "restore"]),
    ("demo", &[]),
    // Training and benchmarks may use everything below them (not the CLI, faces, reports).
    ("train", BELOW_APPS),
    ("bench", BELOW_APPS),
    ("cli", &["*"]),
];

const BELOW_APPS: &[&str] = &[
    "tensor",
    "atomic_file",
    "disk_space",
    "graph",
    "blur",
    "metrics",
    "backend",
    "trace",
    "exec",
    "weights",
    "models",
    "check",
    "degrade",
    "dblm",
    "dsst",
    "diffusion",
    "sampler",
    "restore",
];

/// Files outside `src/cli/` that still name `crate::cli` (none: nothing below the CLI may).
/// The list may only shrink.
const CLI_USERS_TODO: &[&str] = &[];

/// Code that may not name a concrete backend (it takes a `B: Backend`): the models never run
/// anything, and the method layer runs on whatever backend the pipeline was given.
const NO_CONCRETE_BACKEND: &[&str] = &["models", "sampler", "dblm", "dsst", "diffusion", "degrade"];
const CONCRETE_BACKEND: &[&str] = &["backend::cpu", "CpuBackend", "backend::cuda", "CudaBackend"];

/// Models only add nodes to a graph: they never plan or run one.
const NO_EXECUTOR: &[&str] = &["models"];
const EXECUTOR: &[&str] = &["Executor", "exec::", "backend::", "Backend"];

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    rule: &'static str,
    what: String,
}

/// A file's non-test code: everything before its first `#[cfg(test)]`, comments dropped.
fn code_of(text: &str) -> String {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file under `src/` belongs to (`src/restore/shard.rs` → `restore`).
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path under src/");
    let s = first.as_os_str().to_string_lossy();
    s.strip_suffix(".rs").unwrap_or(&s).to_string()
}

/// Every `crate::X` a piece of code names, with `use crate::{a, b::c}` groups expanded.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for part in inner.split(',') {
                let m = ident(part.trim());
                if !m.is_empty() {
                    out.insert(m);
                }
            }
        } else {
            let m = ident(rest);
            if !m.is_empty() {
                out.insert(m);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// A `tests.rs` that its folder's `mod.rs` declares as `#[cfg(test)] mod tests;`: all test
/// code, exempt like a file's own `#[cfg(test)]` part.
fn is_test_module_file(f: &Path) -> bool {
    if f.file_name().is_none_or(|n| n != "tests.rs") {
        return false;
    }
    let parent = f.with_file_name("mod.rs");
    std::fs::read_to_string(parent).is_ok_and(|m| {
        let m: String = m.split_whitespace().collect::<Vec<_>>().join(" ");
        m.contains("#[cfg(test)] mod tests;")
    })
}

/// Checks the tree under `src`; `cli_users_todo` are the allowed leftovers.
fn check_tree(src: &Path, cli_users_todo: &[&str]) -> Vec<Violation> {
    let mut files = vec![];
    rust_files(src, &mut files);
    let mut v = vec![];
    for f in files {
        let rel = f.strip_prefix(src).expect("under src").to_path_buf();
        let name = rel.to_string_lossy().replace('\\', "/");
        if name == "main.rs" || name == "lib.rs" {
            continue;
        }
        if is_test_module_file(&f) {
            continue;
        }
        let module = module_of(&rel);
        let code = code_of(&std::fs::read_to_string(&f).expect("utf-8 source"));
        let mut push = |rule: &'static str, what: String| {
            v.push(Violation {
                file: name.clone(),
                rule,
                what,
            })
        };
        match MAY_USE.iter().find(|(m, _)| *m == module) {
            None => push("layer table", format!("module {module} has no row")),
            Some((_, allowed)) if !allowed.contains(&"*") => {
                for used in crate_modules(&code) {
                    if used == module || allowed.contains(&used.as_str()) {
                        continue;
                    }
                    if used == "cli" && cli_users_todo.contains(&name.as_str()) {
                        continue;
                    }
                    push("layer table", format!("{module} names crate::{used}"));
                }
            }
            Some(_) => {}
        }
        if NO_CONCRETE_BACKEND.contains(&module.as_str()) {
            for pat in CONCRETE_BACKEND {
                if code.contains(pat) {
                    push("no concrete backend", format!("names {pat}"));
                }
            }
        }
        if NO_EXECUTOR.contains(&module.as_str()) {
            for pat in EXECUTOR {
                if code.contains(pat) {
                    push("models build no executor", format!("names {pat}"));
                }
            }
        }
        if module != "cli" && code.contains("clap") {
            push("no clap outside src/cli/", "uses clap".into());
        }
    }
    v.sort();
    v
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_source_tree_keeps_the_layer_rules() {
    let v = check_tree(&src_dir(), CLI_USERS_TODO);
    assert!(v.is_empty(), "layer rules broken:\n{v:#?}");
}

/// The leftover list only names files that still need it, so it shrinks as the code moves.
#[test]
fn the_todo_lists_name_only_real_leftovers() {
    let src = src_dir();
    for f in CLI_USERS_TODO {
        let code = code_of(&std::fs::read_to_string(src.join(f)).expect(f));
        assert!(
            crate_modules(&code).contains("cli"),
            "{f} no longer names crate::cli: drop it from CLI_USERS_TODO"
        );
    }
}

/// A scratch tree that breaks each rule once (and keeps it once, in test code): every rule
/// must fire exactly where it is broken.
#[test]
fn every_rule_fires_on_a_tree_that_breaks_it() {
    let root = std::env::temp_dir().join(format!("dynface-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    // Allowed: graph names tensor; a model's unit test picks the CPU backend.
    write("graph/mod.rs", "use crate::tensor::Tensor;\n");
    write(
        "models/ok.rs",
        "use crate::graph::Graph;\n#[cfg(test)]\nmod tests { use crate::backend::cpu::CpuBackend; }\n",
    );
    // Broken: an upward import, grouped so the group parser is exercised too.
    write(
        "graph/bad.rs",
        "use crate::{tensor::Tensor, sampler::Sampler};\n",
    );
    // Broken: the sampler picks the CPU backend.
    write("sampler/run.rs", "use crate::backend::cpu::CpuBackend;\n");
    // Broken: a model plans a graph.
    write("models/unet/cli.rs", "use crate::exec::Executor;\n");
    // Broken: clap in a domain module; allowed: clap under cli/, and in a comment.
    write("degrade/args.rs", "#[derive(clap::Args)]\nstruct A;\n");
    write("cli/degrade.rs", "#[derive(clap::Args)]\nstruct A;\n");
    write("metrics/mod.rs", "// not clap\n");
    // Broken: a module with no row in the table.
    write("newthing.rs", "\n");
    let v = check_tree(&root, &[]);
    let _ = std::fs::remove_dir_all(&root);
    let got: Vec<(&str, &str)> = v.iter().map(|x| (x.file.as_str(), x.rule)).collect();
    assert_eq!(
        got,
        vec![
            ("degrade/args.rs", "no clap outside src/cli/"),
            ("graph/bad.rs", "layer table"),
            ("models/unet/cli.rs", "layer table"),
            ("models/unet/cli.rs", "models build no executor"),
            ("models/unet/cli.rs", "models build no executor"),
            ("newthing.rs", "layer table"),
            ("sampler/run.rs", "no concrete backend"),
            ("sampler/run.rs", "no concrete backend"),
        ],
        "{v:#?}"
    );
    assert!(v[1].what.contains("crate::sampler"), "{:?}", v[1]);
}
