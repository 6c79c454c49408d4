//! The scale map S_t read back from the step graph at a few steps of each image's
//! trajectory (`--dump`, the HTML report). S is already an output of the step graph, so
//! reading it changes nothing the step computes; it costs one read of `[B,C,H,W]` per
//! recorded step.
//!
//! Which steps: the first of the image's trajectory (its DSST start step, where guidance is
//! strongest relative to the noise), the middle, and the last (t = 0). A mean over steps
//! would blur how S moves from the coarse early steps to the detailed late ones, which is
//! what DGSA learns (METHOD.md Eq. 14/24); three snapshots keep that and stay small.

/// S_t of one image at one step, with the x̂₀ it was computed from.
#[derive(Clone, Debug)]
pub struct ScaleSnapshot {
    /// The image's index in the batch.
    pub image: usize,
    /// Original step index t.
    pub t: usize,
    /// S_t `[C,H,W]`.
    pub scale: Vec<f64>,
    /// x̂₀ of the same step `[C,H,W]` in the model's [−1, 1] range (DGSA's input).
    pub x0: Vec<f64>,
}

/// The positions (indices into the respaced chain, counting down to 0) at which an image
/// starting at position `start` is recorded: first, middle, last, without repeats.
pub fn snapshot_positions(start: usize) -> Vec<usize> {
    let mut v = vec![start, start / 2, 0];
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_first_middle_last_without_repeats() {
        assert_eq!(snapshot_positions(9), vec![9, 4, 0]);
        assert_eq!(snapshot_positions(1), vec![1, 0]);
        assert_eq!(snapshot_positions(0), vec![0]);
    }
}
