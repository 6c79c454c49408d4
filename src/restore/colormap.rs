//! A per-pixel map (DGSA's scale S_t) as a colour picture: the mean over channels, stretched
//! over the map's own range, through a dark-blue → teal → yellow ramp (monotone in
//! lightness, so it reads in grey too). The range goes with the picture (its file name and
//! `stages.json`), since the colours alone say nothing about absolute values.

use image::RgbImage;

/// The ramp's stops, from the minimum to the maximum.
const STOPS: [[f64; 3]; 5] = [
    [13.0, 8.0, 135.0],
    [40.0, 95.0, 160.0],
    [30.0, 160.0, 140.0],
    [150.0, 205.0, 70.0],
    [250.0, 235.0, 40.0],
];

fn ramp(u: f64) -> [u8; 3] {
    let x = u.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mut out = [0u8; 3];
    for (c, o) in out.iter_mut().enumerate() {
        *o = (STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f).round() as u8;
    }
    out
}

/// `map` `[C,H,W]` (row-major) as an `h`×`w` picture and its (min, max) over the channel
/// mean. A flat map (max = min) is drawn at the ramp's middle.
pub fn colour_map(map: &[f64], c: usize, h: usize, w: usize) -> (RgbImage, f64, f64) {
    let hw = h * w;
    let mean: Vec<f64> = (0..hw)
        .map(|p| (0..c).map(|k| map[k * hw + p]).sum::<f64>() / c as f64)
        .collect();
    let lo = mean.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = mean.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = mean[y as usize * w + x as usize];
        let u = if span > 0.0 { (v - lo) / span } else { 0.5 };
        image::Rgb(ramp(u))
    });
    (img, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_range_is_the_channel_mean_s_and_its_ends_take_the_ramp_s_ends() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (c, h, w) = (3, 5, 4);
        let map: Vec<f64> = (0..c * h * w).map(|_| rng.gen_range(0.2..1.8)).collect();
        let (img, lo, hi) = colour_map(&map, c, h, w);
        let mean = |p: usize| (0..c).map(|k| map[k * h * w + p]).sum::<f64>() / c as f64;
        let means: Vec<f64> = (0..h * w).map(mean).collect();
        let (argmin, argmax) = (
            (0..h * w)
                .min_by(|a, b| means[*a].total_cmp(&means[*b]))
                .unwrap(),
            (0..h * w)
                .max_by(|a, b| means[*a].total_cmp(&means[*b]))
                .unwrap(),
        );
        assert_eq!((lo, hi), (means[argmin], means[argmax]));
        let px = |p: usize| img.get_pixel((p % w) as u32, (p / w) as u32).0;
        assert_eq!(px(argmin), [13, 8, 135]);
        assert_eq!(px(argmax), [250, 235, 40]);
    }

    #[test]
    fn a_flat_map_is_drawn_at_the_middle() {
        let (img, lo, hi) = colour_map(&[1.0; 12], 3, 2, 2);
        assert_eq!((lo, hi), (1.0, 1.0));
        assert!(img.pixels().all(|p| p.0 == [30, 160, 140]));
    }
}
