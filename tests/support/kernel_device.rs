//! Where the CUDA kernel tests run, shared by `cuda_parity` and `tc_bf16`: the GPU when one is
//! usable, else the CPU emulator of the same kernel sources (which tests launch code and
//! kernel arithmetic, not the GPU; DYNFACE_NO_EMU=1 turns it off), else a printed skip, which
//! is not a pass. Plus one op run on such a device.
#![allow(dead_code)]

use dynface::backend::cuda::emu::EmuBackend;
use dynface::backend::cuda::{CudaBackend, CudaOptions, KernelBackend, Precision};
use dynface::backend::Operand;
use dynface::graph::{Graph, Op};
use dynface::tensor::{numel, Tensor};

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
                println!("skipped: {test}: {why}");
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
                    println!("skipped: {test}: {why}; no emulator either: {e2}");
                    None
                }
            }
        }
    }
}

/// Runs one op on `be` on an arena poisoned with NaN (so an unwritten output element shows)
/// with a 64-value NaN guard band after the output (a write past its end is an error).
pub fn run_op_on<B: KernelBackend>(
    be: &B,
    op: &Op,
    inputs: &[&Tensor<f32>],
) -> Result<Tensor<f32>, String> {
    let mut g = Graph::new();
    let ids: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| g.input(&format!("in{i}"), &t.shape))
        .collect();
    let id = g.push(op.clone(), &ids).map_err(|e| e.to_string())?;
    let node = g.node(id).clone();
    let mut offsets = vec![];
    let mut at = 0;
    for t in inputs {
        offsets.push(at);
        at += t.numel().max(1);
    }
    let out_off = at;
    let n_out = numel(&node.shape);
    let total = at + n_out.max(1) + 64;
    let e = |e: dynface::backend::BackendError| e.to_string();
    let mut arena = be.alloc(total).map_err(e)?;
    be.fill(&mut arena, 0, total, f32::NAN).map_err(e)?;
    for (t, &o) in inputs.iter().zip(&offsets) {
        be.write(&mut arena, o, &t.data).map_err(e)?;
    }
    let ops: Vec<Operand> = inputs
        .iter()
        .zip(&offsets)
        .map(|(t, &o)| Operand {
            offset: o,
            shape: &t.shape,
        })
        .collect();
    let out = Operand {
        offset: out_off,
        shape: &node.shape,
    };
    be.exec(&mut arena, &node, &ops, out).map_err(e)?;
    let data = be.read(&arena, out_off, n_out).map_err(e)?;
    if be
        .read(&arena, out_off + n_out, 64)
        .map_err(e)?
        .iter()
        .any(|v| !v.is_nan())
    {
        return Err("kernel wrote past the end of its output".into());
    }
    Ok(Tensor::new(node.shape.clone(), data))
}
