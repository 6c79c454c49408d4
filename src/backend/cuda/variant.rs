//! Forcing a convolution / matrix-product launch variant, and the record of which kernel
//! entry points ran. The launch code picks a tile shape and a split-K count from the output
//! size and the multiprocessor count (`ops::pick_tile`, `ops::split_k`), so small test shapes
//! would only ever reach the 64×64 tile without a split; a [`Variant`] set on a backend
//! overrides both choices so the parity table can run every shape through every kernel, and
//! [`LaunchLog`] lets a test prove that every entry point of `kernels/` was exercised.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The tile shapes (rows × columns of the output per block) of the conv and gemm kernels.
pub const TILES: [(usize, usize); 3] = [(64, 64), (64, 128), (128, 128)];

/// A forced launch choice; `None` fields keep the heuristic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variant {
    /// Output tile of every conv direction and matrix product (one of [`TILES`]).
    pub tile: Option<(usize, usize)>,
    /// Number of K splits of the convolutions (clamped so each split has at least one K step
    /// of 16; 1 = no split, the kernel writes the output directly). Matrix products have no
    /// split-K path.
    pub splits: Option<usize>,
}

impl Variant {
    /// Short label for logs: `64x128/split3`, `auto`.
    pub fn label(&self) -> String {
        let tile = self
            .tile
            .map(|(m, n)| format!("{m}x{n}"))
            .unwrap_or_else(|| "auto-tile".into());
        match self.splits {
            Some(s) => format!("{tile}/split{s}"),
            None => format!("{tile}/auto-split"),
        }
    }
}

/// Launch counts per kernel entry point, since creation or the last [`LaunchLog::take`].
#[derive(Debug, Default)]
pub struct LaunchLog(Mutex<BTreeMap<&'static str, u64>>);

impl LaunchLog {
    pub fn record(&self, name: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The (splits, chunk) of a forced split count for a reduction of length `k` over `groups`
/// groups: chunk a multiple of the kernels' K step (16), at most 65535 grid layers.
pub(super) fn forced_split(k: usize, splits: usize, groups: usize) -> (usize, usize) {
    let s = splits
        .clamp(1, k.div_ceil(16).max(1))
        .min(65535 / groups.max(1))
        .max(1);
    let chunk = k.div_ceil(s).div_ceil(16).max(1) * 16;
    (k.div_ceil(chunk).max(1), chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forced_splits_cover_k_exactly_once_with_whole_k_steps() {
        for k in [1, 15, 16, 17, 27, 256, 577, 4096] {
            for want in [1, 2, 3, 7, 1000] {
                let (s, chunk) = forced_split(k, want, 4);
                assert_eq!(chunk % 16, 0, "k {k} want {want}");
                assert!(s >= 1 && s <= want.max(1), "k {k} want {want}: {s}");
                // Every split but possibly the last is full, and none is empty.
                assert!(
                    (s - 1) * chunk < k && s * chunk >= k,
                    "k {k} want {want}: {s}×{chunk}"
                );
            }
        }
        assert_eq!(forced_split(577, 3, 1), (3, 208));
    }
}
