//! Training data: HQ faces from a folder, a reproducible train/validation split, and batches
//! made on the fly — random crop, random horizontal flip, and the degradation of the stage
//! (a true Gaussian blur k_σ ⊛ x for the SDE's stage 1, or Eq. 16's blur, resize, noise and
//! JPEG for the later stages) — on a worker thread that keeps the
//! next batches ready while the backend runs the current step.
//!
//! Every sample is a pure function of (seed, step, index in the batch): its own ChaCha8
//! stream picks the face, the crop, the flip and σ. So a resumed run sees exactly the
//! batches an uninterrupted one would, whatever the prefetch depth or timing.

use crate::blur::{blur_forward, radius};
use crate::degrade::load::{collect_inputs, load_rgb8, stem_of};
use crate::degrade::seed::mix64;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One HQ face, `[3, H, W]` on [0, 1].
#[derive(Clone, Debug)]
pub struct Face {
    pub stem: String,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f32>,
}

/// Loads every PNG/JPEG of `dir` (sorted by name). A file that does not decode is reported
/// on stderr and left out; no usable face at all is an error.
pub fn load_faces(files: &[PathBuf]) -> Result<Vec<Face>> {
    let mut out = vec![];
    for f in files {
        match load_rgb8(f) {
            Ok(img) => {
                let (w, h) = (img.rgb.width() as usize, img.rgb.height() as usize);
                let mut data = vec![0f32; 3 * h * w];
                for (i, p) in img.rgb.pixels().enumerate() {
                    for c in 0..3 {
                        data[c * h * w + i] = p.0[c] as f32 / 255.0;
                    }
                }
                out.push(Face {
                    stem: stem_of(f),
                    h,
                    w,
                    data,
                });
            }
            Err(e) => eprintln!("warning: {e:#}; left out of the training data"),
        }
    }
    Ok(out)
}

/// The split of a face folder: with a separate validation folder, all of `train` trains;
/// otherwise every `holdout_every`-th file (sorted by name, starting with the first) is held
/// out for validation and never trained on.
pub fn split_files(
    train: &Path,
    val: Option<&Path>,
    holdout_every: usize,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let files = collect_inputs(&[train.to_path_buf()])
        .with_context(|| format!("training faces {}", train.display()))?;
    if files.is_empty() {
        bail!("{}: no PNG or JPEG faces to train on", train.display());
    }
    match val {
        Some(v) if v != train => {
            let vf = collect_inputs(&[v.to_path_buf()])
                .with_context(|| format!("validation faces {}", v.display()))?;
            Ok((files, vf))
        }
        _ => {
            if holdout_every < 2 {
                bail!("holdout_every must be at least 2 to keep faces for training");
            }
            let (mut t, mut v) = (vec![], vec![]);
            for (i, f) in files.into_iter().enumerate() {
                if i % holdout_every == 0 {
                    v.push(f)
                } else {
                    t.push(f)
                }
            }
            Ok((t, v))
        }
    }
}

/// A `side`×`side` window of `face` at (top, left), k_σ-blurred as if the whole face had been
/// blurred: the blur runs on the window plus a margin of the kernel radius (clipped at the
/// face's borders, where the reflect boundary is the face's own), so the result equals the
/// same window of the full-face blur at a fraction of the cost. σ ≤ 0 means no blur.
pub fn blurred_window(
    face: &Face,
    top: usize,
    left: usize,
    side: usize,
    sigma: f32,
    flip: bool,
) -> Vec<f32> {
    let m = if sigma > 0.0 {
        radius(sigma as f64) + 1
    } else {
        0
    };
    let (r0, c0) = (top.saturating_sub(m), left.saturating_sub(m));
    let (r1, c1) = ((top + side + m).min(face.h), (left + side + m).min(face.w));
    let (rh, rw) = (r1 - r0, c1 - c0);
    let mut region = vec![0f32; 3 * rh * rw];
    for c in 0..3 {
        for y in 0..rh {
            let src = &face.data[c * face.h * face.w + (r0 + y) * face.w + c0..][..rw];
            region[(c * rh + y) * rw..][..rw].copy_from_slice(src);
        }
    }
    let blurred = if sigma > 0.0 {
        let mut out = vec![0f32; region.len()];
        blur_forward(&region, &[sigma], [1, 3, rh, rw], &mut out);
        out
    } else {
        region
    };
    let mut win = vec![0f32; 3 * side * side];
    for c in 0..3 {
        for y in 0..side {
            for x in 0..side {
                let sx = if flip { side - 1 - x } else { x };
                win[(c * side + y) * side + x] =
                    blurred[(c * rh + top - r0 + y) * rw + left - c0 + sx];
            }
        }
    }
    win
}

/// What the SDE's stage 1 trains on: crops of true Gaussian blurs with σ ~ U[lo, hi].
#[derive(Clone, Debug)]
pub struct BlurBatches {
    pub faces: Arc<Vec<Face>>,
    pub crop: usize,
    pub batch: usize,
    pub sigma: (f32, f32),
    pub seed: u64,
}

/// A batch: images `[B, 3, crop, crop]` on [0, 1] and their labels σ `[B]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub step: u64,
    pub x: Vec<f32>,
    pub sigma: Vec<f32>,
}

/// The random stream of sample `i` of step `step`.
pub fn sample_rng(seed: u64, step: u64, i: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix64(mix64(seed ^ mix64(step)) ^ i as u64))
}

impl BlurBatches {
    pub fn make(&self, step: u64) -> Batch {
        let s = self.crop;
        let mut x = Vec::with_capacity(self.batch * 3 * s * s);
        let mut sigma = Vec::with_capacity(self.batch);
        for i in 0..self.batch {
            let mut rng = sample_rng(self.seed, step, i);
            let f = &self.faces[rng.gen_range(0..self.faces.len())];
            let top = rng.gen_range(0..=f.h - s);
            let left = rng.gen_range(0..=f.w - s);
            let flip = rng.gen_bool(0.5);
            let sg = rng.gen_range(self.sigma.0..=self.sigma.1);
            x.extend(blurred_window(f, top, left, s, sg, flip));
            sigma.push(sg);
        }
        Batch { step, x, sigma }
    }
}

/// Training pairs for the later stages (SE, DGSA): a random crop of an HQ face, randomly
/// flipped, and its Eq. 16 degradation (blur, resize down and back, noise, JPEG) with every
/// draw from the sample's own stream; the drawn parameters come with it (σ for the labels).
#[derive(Clone, Debug)]
pub struct DegradedPairs {
    pub faces: Arc<Vec<Face>>,
    pub crop: usize,
    pub batch: usize,
    pub degrade: crate::degrade::DegradeConfig,
    pub seed: u64,
}

/// LQ and HQ `[B, 3, crop, crop]` on [0, 1] and each sample's degradation.
#[derive(Clone, Debug, PartialEq)]
pub struct PairBatch {
    pub step: u64,
    pub lq: Vec<f32>,
    pub hq: Vec<f32>,
    pub params: Vec<crate::degrade::DegradeParams>,
}

impl DegradedPairs {
    pub fn make(&self, step: u64) -> Result<PairBatch> {
        let s = self.crop;
        let mut out = PairBatch {
            step,
            lq: Vec::with_capacity(self.batch * 3 * s * s),
            hq: Vec::with_capacity(self.batch * 3 * s * s),
            params: vec![],
        };
        for i in 0..self.batch {
            let mut rng = sample_rng(self.seed, step, i);
            let f = &self.faces[rng.gen_range(0..self.faces.len())];
            let top = rng.gen_range(0..=f.h - s);
            let left = rng.gen_range(0..=f.w - s);
            let flip = rng.gen_bool(0.5);
            let hq = blurred_window(f, top, left, s, 0.0, flip);
            let img = image::RgbImage::from_fn(s as u32, s as u32, |x, y| {
                let at =
                    |c: usize| (hq[(c * s + y as usize) * s + x as usize] * 255.0).round() as u8;
                image::Rgb([at(0), at(1), at(2)])
            });
            let p = self.degrade.draw(&mut rng);
            let (lq, _) = crate::degrade::degrade_image(&img, &p, &mut rng)
                .with_context(|| format!("degrading a crop of {}", f.stem))?;
            for c in 0..3 {
                out.lq.extend(lq.pixels().map(|px| px.0[c] as f32 / 255.0));
            }
            out.hq.extend(hq);
            out.params.push(p);
        }
        Ok(out)
    }
}

/// Makes the batch of a step; built on the worker thread by a [`Prefetch`]'s `init`, so it
/// may hold what cannot cross threads (an executor of the restorer, for σ* labels).
pub type MakeBatch<T> = Box<dyn FnMut(u64) -> Result<T>>;

/// Batches `start..end` made on a worker thread, at most `depth` ahead of the consumer.
pub struct Prefetch<T> {
    rx: Receiver<Result<T>>,
    worker: Option<JoinHandle<()>>,
}

impl Prefetch<Batch> {
    pub fn spawn(src: BlurBatches, start: u64, end: u64, depth: usize) -> Prefetch<Batch> {
        Prefetch::spawn_with(
            move || Ok(Box::new(move |step| Ok(src.make(step))) as MakeBatch<Batch>),
            start,
            end,
            depth,
        )
    }
}

impl<T: Send + 'static> Prefetch<T> {
    /// Runs `init` on the worker thread, then its batch maker for each step in order. An
    /// error (of `init` or of a batch) is passed on as that step's item and ends the worker.
    pub fn spawn_with<F>(init: F, start: u64, end: u64, depth: usize) -> Prefetch<T>
    where
        F: FnOnce() -> Result<MakeBatch<T>> + Send + 'static,
    {
        let (tx, rx) = sync_channel(depth.max(1));
        let worker = std::thread::spawn(move || {
            let mut make = match init() {
                Ok(m) => m,
                Err(e) => {
                    let _ = tx.send(Err(e.context("the data worker could not start")));
                    return;
                }
            };
            for step in start..end {
                let item = make(step);
                let failed = item.is_err();
                if tx.send(item).is_err() || failed {
                    return; // the consumer stopped early, or this step cannot be made
                }
            }
        });
        Prefetch {
            rx,
            worker: Some(worker),
        }
    }

    /// The next batch; `None` once the range is done (or the worker died, which the join
    /// in `drop` reports).
    pub fn next_batch(&mut self) -> Option<Result<T>> {
        self.rx.recv().ok()
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        // Unblock a worker waiting to send, then wait for it.
        let (_, dead) = sync_channel(1);
        let rx = std::mem::replace(&mut self.rx, dead);
        drop(rx);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// The fixed validation set of stage 1: the centre `crop` of each held-out face blurred at
/// each σ of `sigmas`.
pub fn validation_set(faces: &[Face], crop: usize, sigmas: &[f32]) -> Vec<(String, f32, Vec<f32>)> {
    let mut v = vec![];
    for f in faces {
        let (top, left) = ((f.h - crop) / 2, (f.w - crop) / 2);
        for &s in sigmas {
            v.push((
                f.stem.clone(),
                s,
                blurred_window(f, top, left, crop, s, false),
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    fn face(h: usize, w: usize, seed: u64) -> Face {
        let t: crate::tensor::Tensor<f32> =
            random::uniform(&mut random::rng(seed), &[3, h, w], 0.0, 1.0);
        Face {
            stem: format!("f{seed}"),
            h,
            w,
            data: t.data,
        }
    }

    /// The window-plus-margin blur equals the window of the whole-face blur, inside and at
    /// the face's borders.
    #[test]
    fn blurred_window_equals_the_window_of_the_full_blur() {
        let f = face(40, 48, 1);
        for (sigma, top, left) in [(2.5f32, 10, 12), (4.0, 0, 0), (1.3, 24, 32), (6.0, 5, 30)] {
            let side = 16;
            let mut full = vec![0f32; f.data.len()];
            blur_forward(&f.data, &[sigma], [1, 3, f.h, f.w], &mut full);
            let win = blurred_window(&f, top, left, side, sigma, false);
            let mut worst = 0f32;
            for c in 0..3 {
                for y in 0..side {
                    for x in 0..side {
                        let a = win[(c * side + y) * side + x];
                        let b = full[c * f.h * f.w + (top + y) * f.w + left + x];
                        worst = worst.max((a - b).abs());
                    }
                }
            }
            // Same taps, same order of sums: measured 0.
            assert!(worst <= 1e-6, "σ {sigma} at ({top},{left}): {worst}");
        }
    }

    #[test]
    fn batches_are_a_function_of_seed_and_step_and_prefetch_keeps_order() {
        let src = BlurBatches {
            faces: Arc::new(vec![face(24, 24, 2), face(30, 26, 3)]),
            crop: 8,
            batch: 3,
            sigma: (0.1, 15.0),
            seed: 9,
        };
        let a = src.make(5);
        assert_eq!(a, src.make(5));
        assert_ne!(a.x, src.make(6).x);
        assert!(a.sigma.iter().all(|s| (0.1..=15.0).contains(s)));
        let mut p = Prefetch::spawn(src.clone(), 3, 7, 2);
        for step in 3..7 {
            assert_eq!(p.next_batch().unwrap().unwrap(), src.make(step));
        }
        assert!(p.next_batch().is_none());
        // Dropped while the worker is blocked on a full queue: must not hang.
        let p = Prefetch::spawn(src, 0, 1000, 1);
        drop(p);
    }

    #[test]
    fn degraded_pairs_follow_eq16_per_sample_and_reproduce() {
        let src = DegradedPairs {
            faces: Arc::new(vec![face(48, 48, 4), face(40, 52, 5)]),
            crop: 32,
            batch: 4,
            degrade: crate::degrade::DegradeConfig::default(),
            seed: 3,
        };
        let a = src.make(2).unwrap();
        assert_eq!(a, src.make(2).unwrap());
        assert_ne!(a.lq, src.make(3).unwrap().lq);
        assert_eq!(
            (a.lq.len(), a.hq.len(), a.params.len()),
            (4 * 3 * 32 * 32, 4 * 3 * 32 * 32, 4)
        );
        for (k, p) in a.params.iter().enumerate() {
            let s = p.sigma.expect("Eq. 16 always blurs");
            assert!((0.1..=15.0).contains(&s), "σ {s}");
            // The degradation changed the sample (blur + noise + JPEG on a random field).
            let r = k * 3 * 32 * 32..(k + 1) * 3 * 32 * 32;
            let d: f32 = a.lq[r.clone()]
                .iter()
                .zip(&a.hq[r])
                .map(|(x, y)| (x - y).abs())
                .sum();
            assert!(d > 1.0, "sample {k} unchanged");
        }
    }

    #[test]
    fn holdout_split_keeps_every_nth_file_out_of_training() {
        let dir = std::env::temp_dir().join(format!("dynface_split_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..7 {
            std::fs::write(dir.join(format!("{i}.png")), b"x").unwrap();
        }
        let (t, v) = split_files(&dir, None, 3).unwrap();
        let names = |v: &[PathBuf]| v.iter().map(|p| stem_of(p)).collect::<Vec<_>>();
        assert_eq!(names(&v), ["0", "3", "6"]);
        assert_eq!(names(&t), ["1", "2", "4", "5"]);
        assert!(split_files(&dir, None, 1).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
