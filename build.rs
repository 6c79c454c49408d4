//! Embeds the CUDA C sources of `kernels/` and generates the registry of their entry points,
//! so the CUDA backend and `dynface kernels check` know every kernel without a CUDA toolkit.
//! Entry points are found by parsing `extern "C" __global__ void [__launch_bounds__(..)] NAME(`.

use std::fmt::Write as _;
use std::path::Path;

fn kernel_names(src: &str) -> Vec<String> {
    let mut names = vec![];
    let marker = "extern \"C\" __global__ void";
    let mut rest = src;
    while let Some(at) = rest.find(marker) {
        let mut s = rest[at + marker.len()..].trim_start();
        if let Some(after) = s.strip_prefix("__launch_bounds__") {
            // Skip the balanced parenthesis group.
            let mut depth = 0;
            let mut end = 0;
            for (i, ch) in after.char_indices() {
                match ch {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            s = after[end..].trim_start();
        }
        let name: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            !name.is_empty(),
            "unparsable kernel declaration near: {}",
            &s[..s.len().min(60)]
        );
        names.push(name);
        rest = &rest[at + marker.len()..];
    }
    names
}

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("kernels/ directory")
        .map(|e| e.expect("kernels/ entry").path())
        .collect();
    entries.sort();
    let mut prelude = vec![];
    let mut files = vec![];
    for p in &entries {
        println!("cargo:rerun-if-changed={}", p.display());
        match p.extension().and_then(|e| e.to_str()) {
            Some("cuh") => prelude.push(p.clone()),
            Some("cu") => files.push(p.clone()),
            _ => {}
        }
    }
    let mut out = String::new();
    out.push_str(
        "/// Shared definitions prepended to every kernel file (no #include under NVRTC).\n",
    );
    out.push_str("pub const PRELUDE: &str = concat!(");
    for p in &prelude {
        write!(
            out,
            "include_str!({:?}), \"\\n\", ",
            p.display().to_string()
        )
        .unwrap();
    }
    out.push_str(
        ");\n\n/// Every kernel file with its entry points.\npub const FILES: &[KernelFile] = &[\n",
    );
    let mut seen = std::collections::HashSet::new();
    for p in &files {
        let src = std::fs::read_to_string(p).expect("kernel source");
        let names = kernel_names(&src);
        for n in &names {
            assert!(seen.insert(n.clone()), "kernel {n} defined twice");
        }
        let stem = p.file_stem().unwrap().to_str().unwrap();
        writeln!(
            out,
            "    KernelFile {{ name: {stem:?}, source: include_str!({:?}), kernels: &{names:?} }},",
            p.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("kernels_gen.rs");
    std::fs::write(dest, out).expect("write kernels_gen.rs");
}
