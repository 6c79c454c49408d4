//! `dynface kernels check --parity [--filter S]`: the op case table ([`crate::check::table`]) and
//! the conv / gemm variant table ([`crate::check::variants`]) on whatever is present here, against
//! the f64 CPU backend: always the CPU f32 backend; the fp32 and bf16 kernels on the GPU when
//! one is usable, else on the CPU emulator of the kernel sources when a C++ compiler is found,
//! else a line saying the kernels were not checked and why (never a silent pass).

use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::emu::EmuBackend;
use crate::backend::cuda::{CudaBackend, CudaOptions, KernelBackend, Precision};
use crate::check::table::{
    format_row, measured_by_family, run_case_table, run_kernel_table, Arith, TableRun,
};
use crate::check::variants::{self, run_variant_table};
use anyhow::{bail, Result};
use std::rc::Rc;

struct Tally {
    compared: usize,
    failures: Vec<String>,
    not_run: Vec<String>,
    launched: std::collections::BTreeSet<&'static str>,
}

fn report_table(label: &str, run: &TableRun, t: &mut Tally) {
    for r in &run.rows {
        if !r.passed() {
            println!("[{label}] {}", format_row(r));
        }
    }
    for m in measured_by_family(run) {
        println!("[{label}] {m}");
    }
    for u in &run.unsupported {
        println!("[{label}] NOT RUN (unsupported): {u}");
        t.not_run.push(format!("[{label}] {u}"));
    }
    let f = run.failures();
    let (flops, bytes) = run
        .rows
        .iter()
        .filter(|r| r.value == "output")
        .fold((0u64, 0u64), |(a, b), r| {
            (a + r.cost.flops, b + r.cost.bytes)
        });
    println!(
        "[{label}] case table: {} values compared, {} failures ({:.3} MFLOP, {:.3} MB of op traffic)",
        run.rows.len(),
        f.len(),
        flops as f64 / 1e6,
        bytes as f64 / 1e6
    );
    t.compared += run.rows.len();
    t.failures
        .extend(f.into_iter().map(|s| format!("[{label}] {s}")));
}

fn kernels<B: KernelBackend>(
    be: Rc<B>,
    label: &str,
    p: Precision,
    filter: Option<&str>,
    t: &mut Tally,
) {
    let arith = match p {
        Precision::Fp32 => Arith::Fp32,
        Precision::Bf16 => Arith::Bf16,
    };
    let run = run_case_table(be.clone(), arith, filter, false);
    report_table(label, &run, t);
    let run = run_kernel_table(be.clone(), arith, filter);
    report_table(&format!("{label} kernel-sized"), &run, t);
    let rows = run_variant_table(&*be, p, filter);
    for r in &rows {
        println!("[{label}] {}", variants::format_row(r));
        if !r.passed() {
            t.failures
                .push(format!("[{label}] {}", variants::format_row(r)));
        }
    }
    t.compared += rows.len();
    t.launched.extend(be.launched().into_keys());
}

/// Runs the parity checks; Err when any value fails or nothing could be compared.
pub fn run_parity(filter: Option<&str>) -> Result<()> {
    let mut t = Tally {
        compared: 0,
        failures: vec![],
        not_run: vec![],
        launched: Default::default(),
    };
    let cpu = run_case_table(Rc::new(CpuBackend::<f32>::new()), Arith::Fp32, filter, true);
    report_table("cpu-f32", &cpu, &mut t);
    let cpu = run_kernel_table(Rc::new(CpuBackend::<f32>::new()), Arith::Fp32, filter);
    report_table("cpu-f32 kernel-sized", &cpu, &mut t);
    match CudaBackend::new() {
        Ok(b) => {
            println!("kernels: on {}", b.info());
            kernels(Rc::new(b), "cuda-fp32", Precision::Fp32, filter, &mut t);
            let opts = CudaOptions {
                precision: Precision::Bf16,
                ..Default::default()
            };
            match CudaBackend::with_options(opts) {
                Ok(b) => kernels(Rc::new(b), "cuda-bf16", Precision::Bf16, filter, &mut t),
                Err(e) => {
                    println!("[cuda-bf16] NOT RUN: {e}");
                    t.not_run.push(format!("cuda-bf16: {e}"));
                }
            }
        }
        Err(gpu) => match EmuBackend::build() {
            Ok(_) => {
                println!("kernels: no GPU ({gpu}); on the CPU emulator of the kernel sources (not a GPU result)");
                for p in [Precision::Fp32, Precision::Bf16] {
                    let e = EmuBackend::build()
                        .map_err(anyhow::Error::msg)?
                        .with_precision(p);
                    let label = format!(
                        "emulator-{}",
                        if p == Precision::Fp32 { "fp32" } else { "bf16" }
                    );
                    kernels(Rc::new(e), &label, p, filter, &mut t);
                }
            }
            Err(emu) => {
                println!("kernels: NOT CHECKED: no GPU ({gpu}) and no emulator ({emu})");
                t.not_run
                    .push(format!("kernels: no GPU, no emulator: {emu}"));
            }
        },
    }
    if !t.launched.is_empty() {
        let eps = variants::conv_gemm_entry_points();
        let missing: Vec<&str> = eps
            .iter()
            .copied()
            .filter(|k| !t.launched.contains(k))
            .collect();
        println!(
            "conv/gemm entry points of kernels/ launched: {} of {}",
            eps.len() - missing.len(),
            eps.len()
        );
        if !missing.is_empty() {
            println!("  never launched: {}", missing.join(", "));
            // Unfiltered, every variant must be reached (with a filter, only some are asked for).
            if filter.is_none() {
                t.failures.push(format!(
                    "entry points never launched: {}",
                    missing.join(", ")
                ));
            }
        }
    }
    println!(
        "parity: {} values compared, {} failures, {} not run",
        t.compared,
        t.failures.len(),
        t.not_run.len()
    );
    if t.compared == 0 {
        bail!("parity: nothing compared (filter {filter:?} matches no case?)");
    }
    if !t.failures.is_empty() {
        bail!(
            "parity: {} failures:\n{}",
            t.failures.len(),
            t.failures.join("\n")
        );
    }
    Ok(())
}
