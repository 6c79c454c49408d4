//! The per-pixel guidance scale S_t of Eq. 13 (the DGSA hook). `S ≡ 1` is the paper's
//! ablation setting C and the default.

use crate::tensor::Tensor;

/// What a scale map sees at one step.
pub struct ScaleContext<'a> {
    /// The guidance images ŷ_i as given to the sampler (`[B,C,H,W]`, in [0, 1]).
    pub guidance: &'a [Tensor<f64>],
    /// x̂₀ of this step (`[B,C,H,W]`, in [−1, 1]).
    pub x0: &'a Tensor<f64>,
    /// The original step index.
    pub t: usize,
}

/// Gives S_t (`[B,C,H,W]`, values in [0, 1]); `Ok(None)` means S ≡ 1.
pub trait ScaleMap {
    fn scale(&mut self, ctx: &ScaleContext) -> anyhow::Result<Option<Tensor<f64>>>;
    /// True only for S ≡ 1 without looking at x̂₀: the device update (which never brings x̂₀
    /// to the host) accepts only such maps; others need `UpdateOn::Host`.
    fn is_unit(&self) -> bool {
        false
    }
}

/// S ≡ 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnitScale;

impl ScaleMap for UnitScale {
    fn scale(&mut self, _ctx: &ScaleContext) -> anyhow::Result<Option<Tensor<f64>>> {
        Ok(None)
    }
    fn is_unit(&self) -> bool {
        true
    }
}

impl<F> ScaleMap for F
where
    F: FnMut(&ScaleContext) -> anyhow::Result<Option<Tensor<f64>>>,
{
    fn scale(&mut self, ctx: &ScaleContext) -> anyhow::Result<Option<Tensor<f64>>> {
        self(ctx)
    }
}
