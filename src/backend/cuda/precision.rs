//! Operand precision of the CUDA backend's convolutions and matrix products.
//!
//! `Fp32` (the default) runs every op in fp32. `Bf16` runs the convolution forward pass and
//! input gradient (`kernels/conv_tc.cu`) and the batched matrix products (`MatMul`, hence
//! `linear`; `kernels/gemm_tc.cu`) on bf16 tensor cores: storage stays fp32, both operands
//! are rounded to bf16 (nearest-even) as they are staged, accumulation is fp32. The conv
//! weight gradient, the fused head-width-64 attention and every other op stay fp32 either way.
//! Expect relative errors near 2⁻⁹ per rounded operand (about 2e-3 to 3e-3 on one product's
//! output) instead of ~1e-7.
//!
//! The type is the graph's node attribute ([`crate::graph::Precision`]): the backend's
//! setting is the default of nodes that carry no mark of their own ([`resolve`]).

pub use crate::graph::Precision;

use super::abi::LaunchState;
use crate::backend::{BResult, BackendError};

/// The precision `node` (its own mark, else the backend's default) runs at here; an error
/// when a node asks for bf16 on a device without bf16 tensor cores.
pub(crate) fn resolve(state: &LaunchState, node: Option<Precision>) -> BResult<Precision> {
    let p = node.unwrap_or(state.precision);
    if p == Precision::Bf16 && !state.bf16_tensor_cores {
        return Err(BackendError::Unsupported(
            "a node marked bf16 needs bf16 tensor cores (compute capability 8.0 or newer)".into(),
        ));
    }
    Ok(p)
}
