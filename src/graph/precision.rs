//! Operand precision of a node, a node attribute ([`super::Node::precision`]) so one graph
//! can run its UNet on bf16 tensor cores and keep other parts (the DGSA scale network, the
//! guidance loss) in fp32. `None` on a node means "the executor's default" (the run's
//! `--precision`); [`super::Graph::with_precision`] marks the nodes a closure adds.
//!
//! Only backends with reduced-precision products read it (CUDA: the convolution forward pass
//! and input gradient, and the matrix products). The CPU backend computes every node in its
//! own element type and ignores it, so CPU results do not depend on the marks.

use std::fmt;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
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
