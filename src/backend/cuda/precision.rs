//! Operand precision of the CUDA backend's convolutions and matrix products.
//!
//! `Fp32` (the default) runs every op in fp32. `Bf16` runs the convolution forward pass and
//! input gradient (`kernels/conv_tc.cu`) and the batched matrix products (`MatMul`, hence
//! `linear`; `kernels/gemm_tc.cu`) on bf16 tensor cores: storage stays fp32, both operands
//! are rounded to bf16 (nearest-even) as they are staged, accumulation is fp32. The conv
//! weight gradient, the fused head-width-64 attention and every other op stay fp32 either way.
//! Expect relative errors near 2⁻⁹ per rounded operand (about 2e-3 to 3e-3 on one product's
//! output) instead of ~1e-7.

use std::fmt;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 operands and accumulation everywhere.
    #[default]
    Fp32,
    /// Convolutions (forward, input gradient) and matrix products with bf16 operands on
    /// tensor cores, fp32 accumulation; everything else fp32.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}
