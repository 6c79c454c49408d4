//! Operand precision of the CUDA backend's convolutions.
//!
//! `Fp32` (the default) runs every op in fp32. `Bf16` runs the convolution forward pass and
//! input gradient on bf16 tensor cores (`kernels/conv_tc.cu`): storage stays fp32, both
//! operands are rounded to bf16 (nearest-even) as they are staged, accumulation is fp32. The
//! conv weight gradient and every other op stay fp32 either way. Expect relative errors near
//! 2⁻⁹ per rounded operand (about 1e-3 to 4e-3 on a convolution's output) instead of ~1e-7.

use std::fmt;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 operands and accumulation everywhere.
    #[default]
    Fp32,
    /// Convolutions (forward, input gradient) with bf16 operands on tensor cores, fp32
    /// accumulation; everything else fp32.
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
