//! `dynface kernels check`: compiles every kernel file with NVRTC for the target
//! architecture(s) and reports ptxas' resources per kernel. Needs only libnvrtc (no GPU), so
//! CI runs it. Fails on any compile error, any register spill, or a registry entry that the
//! compiler did not produce.

use super::kernels::{full_source, FILES};
use super::nvrtc::{self, CompileOpts};
use anyhow::{bail, Result};

#[derive(Debug, Clone)]
pub struct KernelsCheckOptions {
    /// Target architectures (repeatable).
    pub arch: Vec<String>,
    /// Also compile for sm_90a (Hopper-specific instructions).
    pub sm90a: bool,
    /// Compile with --use_fast_math as well.
    pub fast_math: bool,
}

impl Default for KernelsCheckOptions {
    fn default() -> Self {
        KernelsCheckOptions {
            arch: vec!["sm_90".into()],
            sm90a: false,
            fast_math: false,
        }
    }
}

/// ptxas' resource report for one kernel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelResources {
    pub file: String,
    pub kernel: String,
    pub arch: String,
    pub registers: u32,
    pub smem_bytes: u32,
    pub stack_bytes: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

#[derive(Clone, Debug, Default)]
pub struct KernelsCheckReport {
    pub rows: Vec<KernelResources>,
    pub nvrtc_version: (i32, i32),
}

fn number_before(s: &str, unit: &str) -> Option<u32> {
    let at = s.find(unit)?;
    s[..at].split_whitespace().last()?.parse().ok()
}

/// Parses ptxas -v output into one entry per compiled entry function.
pub fn parse_ptxas_log(file: &str, arch: &str, log: &str) -> Vec<KernelResources> {
    let mut out: Vec<KernelResources> = vec![];
    let mut current: Option<usize> = None;
    let mut props_for: Option<String> = None;
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            current = match out.iter().position(|r| r.kernel == name) {
                Some(i) => Some(i),
                None => {
                    out.push(KernelResources {
                        file: file.into(),
                        kernel: name,
                        arch: arch.into(),
                        ..Default::default()
                    });
                    Some(out.len() - 1)
                }
            };
            props_for = None;
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            props_for = Some(rest.trim().to_string());
        } else if line.contains("bytes stack frame") {
            // Belongs to the entry if its properties block is the entry's own.
            if let (Some(i), Some(name)) = (current, &props_for) {
                if out[i].kernel == *name {
                    let r = &mut out[i];
                    r.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
                    r.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                    r.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
                }
            }
        } else if line.contains("Used") && line.contains("registers") {
            if let Some(i) = current {
                let r = &mut out[i];
                r.registers = number_before(line, "registers").unwrap_or(0);
                r.smem_bytes = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

/// Compiles every kernel file; prints the table; errors on failure or spills.
pub fn run_kernels_check(args: &KernelsCheckOptions) -> Result<KernelsCheckReport> {
    if let Some(why) = nvrtc::unavailable() {
        bail!("kernels check: {why}");
    }
    let version = nvrtc::version().map_err(anyhow::Error::msg)?;
    let mut archs = args.arch.clone();
    if args.sm90a && !archs.iter().any(|a| a == "sm_90a") {
        archs.push("sm_90a".into());
    }
    let mut report = KernelsCheckReport {
        rows: vec![],
        nvrtc_version: version,
    };
    let mut failures = vec![];
    for arch in &archs {
        for fast in [false, true] {
            if fast && !args.fast_math {
                continue;
            }
            let mut opts = CompileOpts::new(arch);
            opts.fast_math = fast;
            opts.ptxas_verbose = true;
            for f in FILES {
                match nvrtc::compile(f.name, &full_source(f), &opts) {
                    Err(e) => failures.push(e),
                    Ok(c) => {
                        let rows = parse_ptxas_log(f.name, arch, &c.log);
                        for k in f.kernels {
                            if !rows.iter().any(|r| r.kernel == *k) {
                                failures.push(format!(
                                    "{}.cu ({arch}): kernel {k} is in the registry but ptxas \
                                     reported no entry function of that name",
                                    f.name
                                ));
                            }
                        }
                        for r in &rows {
                            if r.spill_stores > 0 || r.spill_loads > 0 {
                                failures.push(format!(
                                    "{}.cu ({arch}{}): {} spills ({} B stores, {} B loads)",
                                    f.name,
                                    if fast { ", fast-math" } else { "" },
                                    r.kernel,
                                    r.spill_stores,
                                    r.spill_loads
                                ));
                            }
                        }
                        if !fast {
                            report.rows.extend(rows);
                        }
                    }
                }
            }
        }
    }
    println!("{}", format_report(&report));
    if !failures.is_empty() {
        bail!(
            "kernels check failed ({} problems):\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(report)
}

pub fn format_report(r: &KernelsCheckReport) -> String {
    let mut s = format!(
        "NVRTC {}.{}: {} kernels\n{:<12} {:<30} {:<7} {:>5} {:>9} {:>7} {:>9} {:>9}\n",
        r.nvrtc_version.0,
        r.nvrtc_version.1,
        r.rows.len(),
        "file",
        "kernel",
        "arch",
        "regs",
        "smem B",
        "stack B",
        "spill st",
        "spill ld"
    );
    for k in &r.rows {
        s.push_str(&format!(
            "{:<12} {:<30} {:<7} {:>5} {:>9} {:>7} {:>9} {:>9}\n",
            k.file,
            k.kernel,
            k.arch,
            k.registers,
            k.smem_bytes,
            k.stack_bytes,
            k.spill_stores,
            k.spill_loads
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ptxas_report() {
        let log = "ptxas info    : 272 bytes gmem\n\
ptxas info    : Compiling entry function 'k1' for 'sm_90'\n\
ptxas info    : Function properties for k1\n\
ptxas         .     16 bytes stack frame, 12 bytes spill stores, 28 bytes spill loads\n\
ptxas info    : Used 64 registers, used 1 barriers, 16 bytes cumulative stack size, 17408 bytes smem\n\
ptxas info    : Function properties for __internal_helper\n\
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Compiling entry function 'k2' for 'sm_90'\n\
ptxas info    : Function properties for k2\n\
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 32 registers, used 0 barriers\n";
        let r = parse_ptxas_log("f", "sm_90", log);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].registers, r[0].smem_bytes, r[0].stack_bytes),
            (64, 17408, 16)
        );
        assert_eq!((r[0].spill_stores, r[0].spill_loads), (12, 28));
        assert_eq!(
            (r[1].kernel.as_str(), r[1].registers, r[1].spill_loads),
            ("k2", 32, 0)
        );
    }
}
