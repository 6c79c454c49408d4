//! Where the CUDA kernel tests run, shared by `cuda_parity` and `tc_bf16`: the GPU when one is
//! usable, else the CPU emulator of the same kernel sources (which tests launch code and
//! kernel arithmetic, not the GPU; DYNFACE_NO_EMU=1 turns it off), else a printed skip, which
//! is not a pass. Plus one op run on such a device.
#![allow(dead_code)]

use dynface::backend::cuda::emu::EmuBackend;
use dynface::backend::cuda::{CudaBackend, CudaOptions, KernelBackend, Precision};
use dynface::check::skip::{skip, SkipReason};
use dynface::graph::Op;
use dynface::tensor::Tensor;

pub enum Device {
    Cuda(Box<CudaBackend>),
    Emu(EmuBackend),
}

/// The device for `test` at `precision`, saying which one it is.
pub fn device(test: &str, precision: Precision) -> Option<Device> {
    let opts = CudaOptions {
        precision,
        ..Default::default()
    };
    match CudaBackend::with_options(opts) {
        Ok(b) => {
            println!("{test}: on {}", b.info());
            Some(Device::Cuda(Box::new(b)))
        }
        Err(why) => {
            if std::env::var_os("DYNFACE_NO_EMU").is_some() {
                skip(
                    test,
                    SkipReason::Disabled,
                    &format!("{why}; DYNFACE_NO_EMU is set"),
                );
                return None;
            }
            match EmuBackend::build() {
                Ok(e) => {
                    println!(
                        "{test}: no GPU ({why}); checking the kernels on the CPU emulator \
                         (not a GPU result)"
                    );
                    Some(Device::Emu(e.with_precision(precision)))
                }
                Err(e2) => {
                    skip(
                        test,
                        SkipReason::NoCompiler,
                        &format!("{why}; no kernel emulator either: {e2}"),
                    );
                    None
                }
            }
        }
    }
}

/// Runs one op on `be` on an arena poisoned with NaN (so an unwritten output element shows)
/// with a NaN guard band after the output (see `check::variants::run_op_poisoned`).
pub fn run_op_on<B: KernelBackend>(
    be: &B,
    op: &Op,
    inputs: &[&Tensor<f32>],
) -> Result<Tensor<f32>, String> {
    dynface::check::variants::run_op_poisoned(be, op, inputs)
}

/// The op case table (`check::table`: the small cases and the kernel-sized ones) of
/// `families` on `be` against the f64 CPU backend: prints every row, the largest measured
/// error per family and the cases `be` does not implement, and fails on any row over its
/// tolerance (or when no row ran).
pub fn case_table_on<B: dynface::backend::Backend>(
    be: std::rc::Rc<B>,
    arith: dynface::check::table::Arith,
    test: &str,
    families: &[&str],
) {
    use dynface::check::table::{format_row, measured_by_family, run_cases, TableRun};
    let list: Vec<_> = dynface::check::cases::all()
        .into_iter()
        .chain(dynface::check::kernel_cases::all())
        .filter(|c| families.contains(&c.family) && c.family != "large")
        .collect();
    let run: TableRun = run_cases(be, arith, &list, None);
    for r in &run.rows {
        println!("{}", format_row(r));
    }
    for m in measured_by_family(&run) {
        println!("{test}: {m}");
    }
    for u in &run.unsupported {
        println!("{test}: NOT RUN (unsupported here): {u}");
    }
    let failures = run.failures();
    println!(
        "{test}: {} values compared, {} failures, {} cases unsupported",
        run.rows.len(),
        failures.len(),
        run.unsupported.len()
    );
    assert!(!run.rows.is_empty(), "{test}: no case ran");
    assert!(failures.is_empty(), "{test}:\n{}", failures.join("\n"));
}
