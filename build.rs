//! Embeds the CUDA C sources of `kernels/` and generates, from them, everything the Rust side
//! must agree on with the kernels, so nothing is mirrored by hand:
//! - `kernels_gen.rs`: the prelude (every `.cuh`, then static_asserts of the shared layouts)
//!   and the registry of entry points per `.cu` file;
//! - `abi_gen.rs`: the types of `kernels/abi.cuh` as `#[repr(C)]` structs and `#[repr(i32)]`
//!   enums with const asserts of the same layout, and one typed launcher per kernel signature.
//!
//! Entry points are found by parsing `extern "C" __global__ void [__launch_bounds__(..)] NAME(
//! PARAMS)`; PARAMS may be one object-like macro defined in the same file. Entry points whose
//! names differ only by variant tokens (`128x128`, `nn`/`nt`/`tn`/`tt`, `tc`, `v1`, and
//! `block`/`thread`: one block or one thread per output) share one
//! argument struct and must have identical parameter lists; a `NAMEKernel` enum picks the
//! entry point. A field is a parameter by its (lower-cased) name, so a call site can neither
//! reorder nor mistype arguments: either is a compile error.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A C type that crosses the launch boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CType {
    Scalar(&'static str),
    /// `const T*` (false) or `T*` (true), T a scalar.
    Ptr(&'static str, bool),
    /// A struct or enum of abi.cuh, by value.
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Param {
    name: String,
    ty: CType,
}

struct Kernel {
    name: String,
    file: String,
    params: Vec<Param>,
}

/// Rust type of a C scalar.
fn scalar(c: &str) -> Option<&'static str> {
    Some(match c {
        "i64" | "long long" => "i64",
        "int" => "i32",
        "unsigned" | "unsigned int" => "u32",
        "unsigned short" => "u16",
        "float" => "f32",
        "double" => "f64",
        _ => return None,
    })
}

/// Size (= alignment) in bytes of a Rust scalar.
fn scalar_size(r: &str) -> usize {
    match r {
        "i64" | "u64" | "f64" => 8,
        "i32" | "u32" | "f32" => 4,
        "u16" => 2,
        _ => panic!("no size for {r}"),
    }
}

fn strip_comments(src: &str) -> String {
    let mut out = String::new();
    for line in src.lines() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// `#define NAME BODY` (backslash continuations joined), function-like macros skipped.
fn defines(src: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let joined = src.replace("\\\n", " ");
    for line in joined.lines() {
        let Some(rest) = line.trim_start().strip_prefix("#define ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let body = &rest[name.len()..];
        if body.starts_with('(') {
            continue;
        }
        out.insert(name, body.trim().to_string());
    }
    out
}

/// The text inside the parenthesis group that opens at the start of `s`, and what follows.
fn balanced(s: &str) -> (&str, &str) {
    assert!(
        s.starts_with('('),
        "expected '(' near: {}",
        &s[..s.len().min(60)]
    );
    let mut depth = 0;
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return (&s[1..i], &s[i + 1..]);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses near: {}", &s[..s.len().min(60)]);
}

fn parse_param(text: &str, named: &[String], kernel: &str) -> Param {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '*')
        .filter(|w| !w.is_empty() && *w != "__restrict__" && *w != "__grid_constant__")
        .collect();
    let stars = text.matches('*').count();
    let (name, ty) = words.split_last().unwrap_or_else(|| {
        panic!("{kernel}: empty parameter in its signature");
    });
    let constant = ty.first() == Some(&"const");
    let base = ty
        .iter()
        .filter(|w| **w != "const")
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let ty = match (stars, scalar(&base)) {
        (0, Some(s)) => CType::Scalar(s),
        (1, Some(s)) => CType::Ptr(s, !constant),
        (0, None) if named.contains(&base) => CType::Named(base),
        _ => panic!(
            "{kernel}: parameter `{text}` has a type the launch stubs do not map \
             (scalars, pointers to scalars, or a type of abi.cuh by value)"
        ),
    };
    Param {
        name: name.to_string(),
        ty,
    }
}

/// Every entry point of one `.cu` file with its parameters.
fn kernels_of(file: &str, src: &str, named: &[String]) -> Vec<Kernel> {
    let src = strip_comments(src);
    let macros = defines(&src);
    let marker = "extern \"C\" __global__ void";
    let mut out = vec![];
    let mut rest = src.as_str();
    while let Some(at) = rest.find(marker) {
        let mut s = rest[at + marker.len()..].trim_start();
        if let Some(after) = s.strip_prefix("__launch_bounds__") {
            s = balanced(after.trim_start()).1.trim_start();
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
        let (list, _) = balanced(s[name.len()..].trim_start());
        let list = list.trim();
        let list = macros.get(list).map(String::as_str).unwrap_or(list);
        let params = list
            .split(',')
            .map(|p| parse_param(p.trim(), named, &name))
            .collect();
        out.push(Kernel {
            name,
            file: file.to_string(),
            params,
        });
        rest = &rest[at + marker.len()..];
    }
    out
}

struct Struct {
    name: String,
    /// (field, Rust scalar, array length or 1)
    fields: Vec<(String, &'static str, usize)>,
}

struct Enum {
    name: String,
    values: Vec<(String, i64)>,
}

/// The body between `{` and the matching `};` after `head`, for every occurrence of `head`.
fn blocks<'a>(src: &'a str, head: &str) -> Vec<(String, &'a str)> {
    let mut out = vec![];
    let mut rest = src;
    while let Some(at) = rest.find(head) {
        let after = &rest[at + head.len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let open = after.find('{').expect("block without '{'");
        let close = after.find("};").expect("block without '};'");
        out.push((name, &after[open + 1..close]));
        rest = &after[close..];
    }
    out
}

/// The structs and enums of abi.cuh.
fn parse_abi(src: &str) -> (Vec<Struct>, Vec<Enum>, HashMap<String, String>) {
    let src = strip_comments(src);
    let consts = defines(&src);
    let mut structs = vec![];
    for (name, body) in blocks(&src, "struct ") {
        let mut fields = vec![];
        for decl in body.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let (ty, names) = decl
                .split_once(' ')
                .unwrap_or_else(|| panic!("abi.cuh: struct {name}: field `{decl}`"));
            let rust =
                scalar(ty).unwrap_or_else(|| panic!("abi.cuh: struct {name}: field type `{ty}`"));
            for n in names.split(',').map(str::trim) {
                let (field, len) = match n.split_once('[') {
                    Some((f, dim)) => {
                        let dim = dim.trim_end_matches(']').trim();
                        let v = consts.get(dim).map(String::as_str).unwrap_or(dim);
                        (f.trim(), v.parse().expect("array length"))
                    }
                    None => (n, 1),
                };
                fields.push((field.to_string(), rust, len));
            }
        }
        structs.push(Struct { name, fields });
    }
    let mut enums = vec![];
    for (name, body) in blocks(&src, "enum ") {
        let values = body
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (k, v) = e
                    .split_once('=')
                    .unwrap_or_else(|| panic!("abi.cuh: enum {name}: give `{e}` a value"));
                (k.trim().to_string(), v.trim().parse().expect("enum value"))
            })
            .collect();
        enums.push(Enum { name, values });
    }
    (structs, enums, consts)
}

/// (offset of each field, size) under C's rules (natural alignment, no packing).
fn layout(s: &Struct) -> (Vec<usize>, usize) {
    let (mut at, mut align) = (0usize, 1usize);
    let mut offsets = vec![];
    for (_, ty, len) in &s.fields {
        let a = scalar_size(ty);
        at = at.div_ceil(a) * a;
        offsets.push(at);
        at += a * len;
        align = align.max(a);
    }
    (offsets, at.div_ceil(align) * align)
}

fn camel(s: &str) -> String {
    s.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            let first = c.next().unwrap().to_ascii_uppercase();
            std::iter::once(first)
                .chain(c.map(|c| c.to_ascii_lowercase()))
                .collect::<String>()
        })
        .collect()
}

/// A kernel name without its variant tokens (tile, operand layout, tensor-core version).
fn base_name(kernel: &str) -> String {
    let is_variant = |t: &str| {
        let tile = t.split_once('x').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())
        });
        let version =
            t.len() > 1 && t.starts_with('v') && t[1..].bytes().all(|c| c.is_ascii_digit());
        tile || version || matches!(t, "nn" | "nt" | "tn" | "tt" | "tc" | "block" | "thread")
    };
    kernel
        .split('_')
        .filter(|t| !is_variant(t))
        .collect::<Vec<_>>()
        .join("_")
}

/// The variant tokens of a kernel name: its tile, whether it runs on tensor cores, and
/// (gemm) whether A and B are read K- and N-contiguous (`n`) or transposed (`t`).
struct Tokens {
    tile: Option<(usize, usize)>,
    tc: bool,
    operands: Option<(bool, bool)>,
}

fn tokens(kernel: &str) -> Tokens {
    let mut t = Tokens {
        tile: None,
        tc: false,
        operands: None,
    };
    for tok in kernel.split('_') {
        if let Some((a, b)) = tok.split_once('x') {
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                t.tile = Some((a, b));
            }
        }
        match tok {
            "tc" => t.tc = true,
            "nn" | "nt" | "tn" | "tt" => {
                let b = tok.as_bytes();
                t.operands = Some((b[0] == b'n', b[1] == b'n'));
            }
            _ => {}
        }
    }
    t
}

fn field_name(param: &str) -> String {
    let f = param.to_ascii_lowercase();
    match f.as_str() {
        "in" | "type" | "fn" | "mod" | "ref" | "move" | "use" | "loop" | "match" => f + "_",
        _ => f,
    }
}

fn rust_type(t: &CType) -> String {
    match t {
        CType::Scalar(s) => s.to_string(),
        CType::Ptr(s, false) => format!("DevPtr<{s}>"),
        CType::Ptr(s, true) => format!("DevMut<{s}>"),
        CType::Named(n) => n.clone(),
    }
}

fn gen_abi(
    structs: &[Struct],
    enums: &[Enum],
    consts: &HashMap<String, String>,
    kernels: &[Kernel],
) -> (String, String) {
    let mut rs = String::new();
    let mut c = String::from(
        "\n// ---- layout checks generated by build.rs (the Rust mirrors assert the same)\n",
    );
    let mut sorted: Vec<_> = consts
        .iter()
        .filter(|(_, v)| v.parse::<usize>().is_ok())
        .collect();
    sorted.sort();
    for (k, v) in sorted {
        writeln!(
            rs,
            "/// `#define {k}` of kernels/abi.cuh.\npub const {k}: usize = {v};"
        )
        .unwrap();
    }
    for s in structs {
        let (offsets, size) = layout(s);
        writeln!(rs, "\n/// `struct {}` of kernels/abi.cuh.", s.name).unwrap();
        writeln!(
            rs,
            "#[repr(C)]\n#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]\npub struct {} {{",
            s.name
        )
        .unwrap();
        for (f, ty, len) in &s.fields {
            if *len == 1 {
                writeln!(rs, "    pub {f}: {ty},").unwrap();
            } else {
                writeln!(rs, "    pub {f}: [{ty}; {len}],").unwrap();
            }
        }
        rs.push_str("}\n");
        writeln!(
            rs,
            "const _: () = assert!(std::mem::size_of::<{}>() == {size});",
            s.name
        )
        .unwrap();
        let align = s
            .fields
            .iter()
            .map(|(_, ty, _)| scalar_size(ty))
            .max()
            .unwrap_or(1);
        writeln!(
            rs,
            "const _: () = assert!(std::mem::align_of::<{}>() == {align});",
            s.name
        )
        .unwrap();
        writeln!(c, "static_assert(sizeof({0}) == {size} && alignof({0}) == {align}, \"{0}: layout differs from its Rust mirror\");", s.name).unwrap();
        // NVRTC has no offsetof: it checks each field's size; the host compiler (the kernel
        // emulator, built by every test run) each offset too.
        let mut offs = String::new();
        for ((f, ty, len), off) in s.fields.iter().zip(&offsets) {
            writeln!(
                rs,
                "const _: () = assert!(std::mem::offset_of!({}, {f}) == {off});",
                s.name
            )
            .unwrap();
            writeln!(c, "static_assert(sizeof({0}::{f}) == {1}, \"{0}.{f}: size differs from its Rust mirror\");", s.name, scalar_size(ty) * len).unwrap();
            writeln!(offs, "static_assert(__builtin_offsetof({0}, {f}) == {off}, \"{0}.{f}: offset differs from its Rust mirror\");", s.name).unwrap();
        }
        writeln!(c, "#ifndef __CUDACC_RTC__\n{offs}#endif").unwrap();
    }
    for e in enums {
        writeln!(rs, "\n/// `enum {}` of kernels/abi.cuh.", e.name).unwrap();
        writeln!(
            rs,
            "#[repr(i32)]\n#[derive(Clone, Copy, Debug, PartialEq, Eq)]\npub enum {} {{",
            e.name
        )
        .unwrap();
        for (k, v) in &e.values {
            let variant = camel(k.split_once('_').map_or(k.as_str(), |(_, rest)| rest));
            writeln!(rs, "    /// `{k}`\n    {variant} = {v},").unwrap();
        }
        rs.push_str("}\n");
        writeln!(
            rs,
            "const _: () = assert!(std::mem::size_of::<{}>() == 4);",
            e.name
        )
        .unwrap();
        writeln!(
            c,
            "static_assert(sizeof({}) == 4, \"{}: not an int\");",
            e.name, e.name
        )
        .unwrap();
    }
    // One argument struct per base name.
    let mut groups: BTreeMap<String, Vec<&Kernel>> = BTreeMap::new();
    for k in kernels {
        groups.entry(base_name(&k.name)).or_default().push(k);
    }
    for (base, ks) in &groups {
        let first = ks[0];
        for k in &ks[1..] {
            assert!(
                k.params == first.params,
                "{} and {} share the argument struct {} (their names differ only by variant \
                 tokens) but not their parameter lists; rename one",
                first.name,
                k.name,
                camel(base)
            );
        }
        let ty = camel(base);
        let fields: Vec<(String, String)> = first
            .params
            .iter()
            .map(|p| (field_name(&p.name), rust_type(&p.ty)))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for (f, _) in &fields {
            assert!(
                seen.insert(f.clone()),
                "{}: two parameters named {f} (case-insensitively)",
                first.name
            );
        }
        let names: Vec<String> = ks
            .iter()
            .map(|k| format!("`{}` ({}.cu)", k.name, k.file))
            .collect();
        writeln!(
            rs,
            "\n/// Arguments of {}, in the kernels' order.",
            names.join(", ")
        )
        .unwrap();
        writeln!(rs, "#[derive(Clone, Copy, Debug)]\npub struct {ty} {{").unwrap();
        for (f, t) in &fields {
            writeln!(rs, "    pub {f}: {t},").unwrap();
        }
        rs.push_str("}\n");
        let single = ks.len() == 1 && ks[0].name == *base;
        if !single {
            writeln!(rs, "\n/// The entry points that take [`{ty}`].\n#[allow(non_camel_case_types)]\n#[derive(Clone, Copy, Debug, PartialEq, Eq)]\npub enum {ty}Kernel {{").unwrap();
            for k in ks {
                writeln!(rs, "    {},", k.name).unwrap();
            }
            rs.push_str("}\n");
            writeln!(
                rs,
                "impl KernelFamily for {ty}Kernel {{\n    const ALL: &'static [Self] = &[{}];",
                ks.iter()
                    .map(|k| format!("{ty}Kernel::{}", k.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .unwrap();
            let arms = |f: &dyn Fn(&str) -> String| -> String {
                ks.iter()
                    .map(|k| format!("            {ty}Kernel::{} => {},\n", k.name, f(&k.name)))
                    .collect()
            };
            write!(rs, "    fn name(self) -> &'static str {{\n        match self {{\n{}        }}\n    }}\n", arms(&|n| format!("{n:?}"))).unwrap();
            write!(rs, "    fn tile(self) -> Option<(usize, usize)> {{\n        match self {{\n{}        }}\n    }}\n", arms(&|n| match tokens(n).tile { Some((m, n)) => format!("Some(({m}, {n}))"), None => "None".into() })).unwrap();
            write!(rs, "    fn tensor_cores(self) -> bool {{\n        match self {{\n{}        }}\n    }}\n", arms(&|n| tokens(n).tc.to_string())).unwrap();
            write!(rs, "    fn operands_n(self) -> Option<(bool, bool)> {{\n        match self {{\n{}        }}\n    }}\n}}\n", arms(&|n| match tokens(n).operands { Some((a, b)) => format!("Some(({a}, {b}))"), None => "None".into() })).unwrap();
        }
        writeln!(rs, "impl {ty} {{").unwrap();
        let (sig, name) = if single {
            (String::new(), format!("{:?}", ks[0].name))
        } else {
            (format!(", kernel: {ty}Kernel"), "kernel.name()".into())
        };
        writeln!(rs, "    /// Launches the kernel on `grid` with these arguments.\n    pub(crate) fn launch(self, l: &dyn Launcher{sig}, grid: Grid) -> BResult<()> {{\n        let mut a = self;\n        let mut params: [*mut c_void; {}] = [", fields.len()).unwrap();
        for (f, _) in &fields {
            writeln!(rs, "            &mut a.{f} as *mut _ as *mut c_void,").unwrap();
        }
        writeln!(
            rs,
            "        ];\n        let sizes: [usize; {}] = [",
            fields.len()
        )
        .unwrap();
        for (f, _) in &fields {
            writeln!(rs, "            std::mem::size_of_val(&a.{f}),").unwrap();
        }
        writeln!(rs, "        ];\n        // SAFETY: generated from the kernel's own signature: one field per parameter, in\n        // its order, each of the Rust type whose layout is that of the C type.\n        unsafe {{ l.launch_raw({name}, grid, KernelArgs {{ ptrs: &mut params, sizes: &sizes }}) }}\n    }}\n}}").unwrap();
    }
    (rs, c)
}

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    // The run-time variable, not `env!`: a build script compiled in one checkout and reused
    // from a copied target directory would otherwise read the first checkout's kernels.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("kernels");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
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
    let abi_src = std::fs::read_to_string(dir.join("abi.cuh")).expect("kernels/abi.cuh");
    let (structs, enums, consts) = parse_abi(&abi_src);
    let named: Vec<String> = structs
        .iter()
        .map(|s| s.name.clone())
        .chain(enums.iter().map(|e| e.name.clone()))
        .collect();

    let mut all = vec![];
    let mut registry = String::new();
    let mut seen = std::collections::HashSet::new();
    for p in &files {
        let src = std::fs::read_to_string(p).expect("kernel source");
        let stem = p.file_stem().unwrap().to_str().unwrap();
        let ks = kernels_of(stem, &src, &named);
        let names: Vec<&str> = ks.iter().map(|k| k.name.as_str()).collect();
        for n in &names {
            assert!(seen.insert(n.to_string()), "kernel {n} defined twice");
        }
        writeln!(
            registry,
            "    KernelFile {{ name: {stem:?}, source: include_str!({:?}), kernels: &{names:?} }},",
            p.display().to_string()
        )
        .unwrap();
        all.extend(ks);
    }
    let (abi_rs, layout_asserts) = gen_abi(&structs, &enums, &consts, &all);

    let mut out = String::new();
    out.push_str(
        "/// Shared definitions prepended to every kernel file (no #include under NVRTC), ending \
         with the layout checks of abi.cuh's types.\npub const PRELUDE: &str = concat!(",
    );
    for p in &prelude {
        write!(
            out,
            "include_str!({:?}), \"\\n\", ",
            p.display().to_string()
        )
        .unwrap();
    }
    writeln!(out, "{layout_asserts:?});\n").unwrap();
    out.push_str(
        "/// Every kernel file with its entry points.\npub const FILES: &[KernelFile] = &[\n",
    );
    out.push_str(&registry);
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("kernels_gen.rs"), out).expect("write kernels_gen.rs");
    std::fs::write(out_dir.join("abi_gen.rs"), abi_rs).expect("write abi_gen.rs");
}
