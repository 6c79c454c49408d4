//! The tile shapes and split-K of the tiled products (`kernels/tile.cuh`), shared by the
//! convolutions and the matrix products.

use crate::backend::cuda::abi::LaunchState;
use crate::backend::cuda::variant::forced_split;

/// The tile of a product: the forced one, else [`pick_tile`]'s.
pub(super) fn tile_for(c: &LaunchState, m: usize, n: usize, batch: usize) -> (usize, usize) {
    c.variant()
        .tile
        .unwrap_or_else(|| pick_tile(m, n, batch, c.sms))
}

/// Tile shape for a product of M rows and N columns, smaller tiles when the grid would not
/// fill the device.
fn pick_tile(m: usize, n: usize, batch: usize, sms: usize) -> (usize, usize) {
    let tiles = |bm: usize, bn: usize| m.div_ceil(bm) * n.div_ceil(bn) * batch;
    let mut t = if m > 64 && n > 64 {
        (128, 128)
    } else if n > 64 {
        (64, 128)
    } else {
        (64, 64)
    };
    if t == (128, 128) && tiles(128, 128) < sms {
        t = (64, 128);
    }
    if t == (64, 128) && tiles(64, 128) < sms {
        t = (64, 64);
    }
    t
}

/// (splits, chunk) of a product over `k` with `tiles` output tiles: the forced split, else
/// [`split_k`]'s.
pub(super) fn splits_for(
    c: &LaunchState,
    tiles: usize,
    k: usize,
    out_elems: usize,
    groups: usize,
    eager: bool,
) -> (usize, usize) {
    match c.variant().splits {
        Some(s) => forced_split(k, s, groups),
        None => split_k(tiles, k, c.sms, out_elems, groups, eager),
    }
}

/// How many ways to split a product's K range, aiming at two blocks per SM: when `eager`,
/// whenever there are fewer tiles than that, otherwise only when there are fewer tiles than
/// SMs (late UNet layers: 512 ch at 16²). Each split keeps ≥ 256 of K, partial sums stay
/// ≤ 64 Mi floats, grid.z ≤ 65535. Returns (splits, chunk), chunk a multiple of the K step.
fn split_k(
    tiles: usize,
    k: usize,
    sms: usize,
    out_elems: usize,
    groups: usize,
    eager: bool,
) -> (usize, usize) {
    let mut splits = if !eager && tiles >= sms {
        1
    } else {
        (2 * sms).div_ceil(tiles.max(1))
    };
    splits = splits
        .min(k / 256)
        .min(((64usize << 20) / out_elems.max(1)).max(1))
        .min(65535 / groups.max(1))
        .max(1);
    let chunk = k.div_ceil(splits).div_ceil(16).max(1) * 16;
    (k.div_ceil(chunk).max(1), chunk)
}
