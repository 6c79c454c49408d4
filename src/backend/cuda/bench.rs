//! Convolution throughput at the UNet's shapes (3×3, stride 1, pad 1, C→C): forward,
//! input-gradient and weight-gradient GFLOP/s, timed with CUDA events (median of repeats,
//! after a warm-up that also compiles the kernels).

use super::abi::{ConvGeo, DevMut, DevPtr};
use super::ops::{
    conv_bwd_input, conv_bwd_weight, conv_fwd, conv_scratch_len, DevScratch, Direction,
};
use super::{dev_err, CudaBackend};
use crate::backend::cuda::abi::Launcher;
use crate::backend::{BResult, Backend};
use crate::graph::Conv2dParams;
use crate::tensor::random::{normal, rng};
use cudarc::driver::sys;

/// What the conv table times.
#[derive(Debug, Clone)]
pub struct ConvBenchOptions {
    /// Batch sizes to time.
    pub batches: Vec<usize>,
    /// Timed repeats per case (the median is reported).
    pub iters: usize,
}

impl Default for ConvBenchOptions {
    fn default() -> Self {
        ConvBenchOptions {
            batches: vec![1, 8],
            iters: 20,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConvBenchRow {
    pub channels: usize,
    pub size: usize,
    pub batch: usize,
    pub fwd_ms: f64,
    pub bwd_input_ms: f64,
    pub bwd_weight_ms: f64,
    pub gflop: f64,
    /// (tile, forward ms, input-gradient ms) with the tile shape forced.
    pub tiles: Vec<((usize, usize), f64, f64)>,
}

impl ConvBenchRow {
    pub fn rate(&self, ms: f64) -> f64 {
        self.gflop / (ms * 1e-3)
    }
}

/// The UNet's (channels, spatial size) pairs.
pub const UNET_SHAPES: [(usize, usize); 4] = [(64, 128), (128, 64), (256, 32), (512, 16)];

fn median_ms(be: &CudaBackend, iters: usize, mut f: impl FnMut() -> BResult<()>) -> BResult<f64> {
    let ctx = be.context();
    let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    let mut times = vec![];
    for _ in 0..iters.max(1) {
        let a = ctx.new_event(flags).map_err(|e| dev_err("event", e))?;
        let b = ctx.new_event(flags).map_err(|e| dev_err("event", e))?;
        a.record(be.stream()).map_err(|e| dev_err("event", e))?;
        f()?;
        b.record(be.stream()).map_err(|e| dev_err("event", e))?;
        b.synchronize().map_err(|e| dev_err("event", e))?;
        times.push(a.elapsed_ms(&b).map_err(|e| dev_err("event", e))? as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub fn run_conv_bench(be: &CudaBackend, args: &ConvBenchOptions) -> BResult<Vec<ConvBenchRow>> {
    let mut rows = vec![];
    let p = Conv2dParams {
        stride: 1,
        pad: 1,
        groups: 1,
    };
    for &(c, hw) in &UNET_SHAPES {
        for &n in &args.batches {
            let xs = [n, c, hw, hw];
            let ws = [c, c, 3, 3];
            let g = ConvGeo::new(&xs, &ws, &p);
            let (nx, nw) = (n * c * hw * hw, c * c * 9);
            let mut r = rng(1000 + c as u64 + n as u64);
            let x = normal::<f32>(&mut r, &xs, 1.0);
            let w = normal::<f32>(&mut r, &ws, 0.05);
            let dy = normal::<f32>(&mut r, &xs, 1.0);
            // Layout: x | w | y | dy | dx | dw | scratch (the largest split-K partials of
            // any direction and tile timed).
            let cfg = be.state();
            let tiles = [(128, 128), (64, 128), (64, 64)];
            let scratch_len = [Direction::Forward, Direction::BackwardInput]
                .iter()
                .flat_map(|&d| {
                    std::iter::once(None)
                        .chain(tiles.map(Some))
                        .map(move |t| conv_scratch_len(cfg, &g, d, t))
                })
                .chain(std::iter::once(conv_scratch_len(
                    cfg,
                    &g,
                    Direction::BackwardWeight,
                    None,
                )))
                .max()
                .unwrap_or(0);
            let mut arena = be.alloc(4 * nx + 2 * nw + scratch_len)?;
            be.write(&mut arena, 0, &x.data)?;
            be.write(&mut arena, nx, &w.data)?;
            be.write(&mut arena, 2 * nx + nw, &dy.data)?;
            let at = |o: usize| DevPtr::<f32>::at(arena.addr(o));
            let at_mut = |o: usize| DevMut::<f32>::at(arena.addr(o));
            let (ax, aw, ay) = (at(0), at(nx), at_mut(nx + nw));
            let (ady, adx) = (at(2 * nx + nw), at_mut(3 * nx + nw));
            let adw = at_mut(4 * nx + nw);
            let ws = DevScratch {
                at: at_mut(4 * nx + 2 * nw),
                len: scratch_len,
            };
            let prec = be.precision();
            let fwd = |t| conv_fwd(be, ws, g, ax, aw, None, ay, t, prec);
            let bwd_input = |t| conv_bwd_input(be, ws, g, ady, aw, adx, t, prec);
            let bwd_weight = || conv_bwd_weight(be, ws, g, ax, ady, adw);
            // Warm-up (compiles the kernels).
            fwd(None)?;
            bwd_input(None)?;
            bwd_weight()?;
            be.synchronize()?;
            let fwd_ms = median_ms(be, args.iters, || fwd(None))?;
            let bwd_input_ms = median_ms(be, args.iters, || bwd_input(None))?;
            let bwd_weight_ms = median_ms(be, args.iters, bwd_weight)?;
            let mut tiles_ms = vec![];
            for t in tiles {
                let f = median_ms(be, args.iters, || fwd(Some(t)))?;
                let d = median_ms(be, args.iters, || bwd_input(Some(t)))?;
                tiles_ms.push((t, f, d));
            }
            rows.push(ConvBenchRow {
                channels: c,
                size: hw,
                batch: n,
                fwd_ms,
                bwd_input_ms,
                bwd_weight_ms,
                gflop: 2.0 * (n * c * hw * hw * c * 9) as f64 / 1e9,
                tiles: tiles_ms,
            });
        }
    }
    Ok(rows)
}

pub fn format_rows(rows: &[ConvBenchRow]) -> String {
    let mut s = format!(
        "{:>5} {:>5} {:>5} {:>8} | {:>9} {:>9} | {:>9} {:>9} | {:>9} {:>9}\n",
        "ch", "size", "batch", "GFLOP", "fwd ms", "GFLOP/s", "dx ms", "GFLOP/s", "dw ms", "GFLOP/s"
    );
    for r in rows {
        s.push_str(&format!(
            "{:>5} {:>5} {:>5} {:>8.2} | {:>9.3} {:>9.0} | {:>9.3} {:>9.0} | {:>9.3} {:>9.0}\n",
            r.channels,
            r.size,
            r.batch,
            r.gflop,
            r.fwd_ms,
            r.rate(r.fwd_ms),
            r.bwd_input_ms,
            r.rate(r.bwd_input_ms),
            r.bwd_weight_ms,
            r.rate(r.bwd_weight_ms)
        ));
    }
    s.push_str("tile sweep (GFLOP/s forward / input-gradient with the tile forced):\n");
    for r in rows {
        s.push_str(&format!("{:>5} {:>5} {:>5} |", r.channels, r.size, r.batch));
        for ((bm, bn), f, d) in &r.tiles {
            s.push_str(&format!(
                " {bm}x{bn}: {:>6.0} / {:>6.0} |",
                r.rate(*f),
                r.rate(*d)
            ));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_rates_and_the_tile_sweep() {
        let r = ConvBenchRow {
            channels: 64,
            size: 128,
            batch: 1,
            fwd_ms: 0.1,
            bwd_input_ms: 0.2,
            bwd_weight_ms: 0.4,
            gflop: 1.2,
            tiles: vec![((128, 128), 0.1, 0.2), ((64, 64), 0.3, 0.6)],
        };
        assert!((r.rate(0.1) - 12_000.0).abs() < 1e-6);
        let t = format_rows(&[r]);
        assert!(t.contains("12000"), "{t}");
        assert!(t.contains("128x128:  12000 /   6000"), "{t}");
        assert!(t.contains("64x64:   4000 /   2000"), "{t}");
    }
}
