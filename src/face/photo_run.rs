//! `dynface restore` on whole photos: each photo's faces are detected, filtered (size,
//! `--only-center-face`, `--max-faces`), aligned to the network's template crop and queued;
//! faces from one or several photos go through the sampler together in batches of
//! `--batch` faces; a photo is pasted back and written as soon as its last face is done.
//! A photo without a (usable) face is copied through unchanged, with a note.

use super::align::{align_face_by, Affine, Fit, Planes};
use super::detect::mtcnn_weights::{load_mtcnn, MTCNN_FILE};
use super::detect::retinaface_decode::Thresholds;
use super::detect::retinaface_nets::Variant;
use super::detect::retinaface_weights::load_retinaface;
use super::detect::{Detector, Face, Mtcnn, MtcnnOptions, RetinaFace, RgbPlanes};
use super::paste::paste_face;
use super::photo::{encode_photo, load_photo, output_path, Photo};
use crate::backend::Backend;
use crate::degrade::load::stem_of;
use crate::degrade::seed::mix64;
use crate::restore::images::{png_bytes, to_rgb8};
use crate::restore::pipeline::{BatchResult, ImageTrace};
use crate::restore::report::ImageReport;
use crate::tensor::Tensor;
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// MTCNN with facenet-pytorch 2.6.0's weights (`dynface weights mtcnn`).
    Mtcnn,
    /// RetinaFace with facexlib's ResNet-50 or MobileNet-0.25 checkpoint (`dynface weights
    /// download retinaface_resnet50`; the variant is told from the weights).
    Retinaface,
}

impl DetectorKind {
    /// How to get this detector's weights, for error messages.
    pub fn how_to_get(self) -> String {
        match self {
            DetectorKind::Mtcnn => super::detect::mtcnn_weights::how_to_get(),
            DetectorKind::Retinaface => {
                super::detect::retinaface_weights::how_to_get(Variant::Resnet50)
            }
        }
    }
}

/// Whole-photo options of `dynface restore`. Faces are restored and pasted back; the rest
/// of the photo (the background) is kept as it is: there is no background upscaler.
/// (The flags: `cli::restore::PhotoArgs`.)
#[derive(Clone, Debug)]
pub struct PhotoOptions {
    /// Treat every input as an aligned face crop (resized to the network size and back).
    pub aligned: bool,
    /// Detect and align faces in every input, even one at the network size. By default an
    /// input at the network size (512² for the official set) is taken as an aligned crop and
    /// any other as a whole photo: its faces are restored and pasted back, the rest (the
    /// background) is kept as it is (there is no background upscaler).
    pub detect: bool,
    /// Which face detector finds the faces.
    pub detector: DetectorKind,
    /// The detector's weights (default: WEIGHTS/mtcnn.safetensors, a facenet-pytorch wheel
    /// or a folder with its pnet.pt, rnet.pt, onet.pt also works; for RetinaFace
    /// WEIGHTS/detection_Resnet50_Final.safetensors, or facexlib's .pth of either variant).
    pub detector_weights: Option<PathBuf>,
    /// Faces whose box is smaller than this (shorter side, pixels) are skipped and reported.
    pub min_face_size: f32,
    /// How the five landmarks are fitted to the template: least squares, or facexlib's LMEDS
    /// (robust to one bad landmark).
    pub align_fit: Fit,
    /// Restore only the face nearest the photo's centre.
    pub only_center_face: bool,
    /// Restore at most this many faces per photo, the largest first.
    pub max_faces: Option<usize>,
    /// Quality of JPEG outputs (JPEG inputs give JPEG outputs, PNG gives PNG).
    pub jpeg_quality: u8,
}

impl Default for PhotoOptions {
    /// The command line's defaults.
    fn default() -> Self {
        PhotoOptions {
            aligned: false,
            detect: false,
            detector: DetectorKind::Mtcnn,
            detector_weights: None,
            min_face_size: 20.0,
            align_fit: Fit::Lstsq,
            only_center_face: false,
            max_faces: None,
            jpeg_quality: 95,
        }
    }
}

/// Whether `path` goes the whole-photo way: `--detect`, or (unless `--aligned`) any input
/// not at the network size. Unreadable files go the aligned way, which reports them.
pub fn is_whole_photo(path: &Path, args: &PhotoOptions, size: usize) -> bool {
    if args.aligned {
        return false;
    }
    if args.detect {
        return true;
    }
    let dims = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    matches!(dims, Some((w, h)) if (w as usize, h as usize) != (size, size))
}

/// Where the detector's weights are looked for.
pub fn detector_weights_path(args: &PhotoOptions, weights_dir: &Path) -> PathBuf {
    args.detector_weights
        .clone()
        .unwrap_or_else(|| match args.detector {
            DetectorKind::Mtcnn => weights_dir.join(MTCNN_FILE),
            DetectorKind::Retinaface => weights_dir.join(Variant::Resnet50.safetensors_file()),
        })
}

/// Splits the inputs into whole photos and aligned crops ([`is_whole_photo`]). Without the
/// detector's weights and without `--detect`, photos fall back to the aligned path (as
/// before whole photos existed) with one warning saying how to get the weights.
pub fn split_inputs(
    files: &[PathBuf],
    args: &PhotoOptions,
    size: usize,
    weights_dir: &Path,
    log: &dyn Fn(&str),
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (photos, aligned): (Vec<PathBuf>, Vec<PathBuf>) = files
        .iter()
        .cloned()
        .partition(|f| is_whole_photo(f, args, size));
    let w = detector_weights_path(args, weights_dir);
    if photos.is_empty() || args.detect || w.exists() {
        return (photos, aligned);
    }
    log(&format!(
        "warning: {} input(s) are not {size}² aligned crops, but there are no face-detector weights at {}: \
         they are treated as aligned crops (resized); to restore them as whole photos, {}",
        photos.len(),
        w.display(),
        args.detector.how_to_get()
    ));
    let mut all = files.to_vec();
    all.sort();
    (vec![], all)
}

/// One face of a photo in the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FaceReport {
    pub index: usize,
    pub bbox: [f32; 4],
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
    /// "restored", "skipped (...)" or "failed".
    pub status: String,
    pub seed: u64,
    /// Photo → crop similarity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transform: Option<Affine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<PathBuf>,
    /// σ̂, the guidance σ_i and their start steps t_i.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<ImageTrace>,
    /// This face's share of its batch's restoration time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// What a whole photo adds to its report entry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PhotoReport {
    pub detector: DetectorKind,
    pub width: u32,
    pub height: u32,
    pub detect_seconds: f64,
    pub paste_seconds: f64,
    pub faces: Vec<FaceReport>,
}

pub struct PhotoRun<'a> {
    pub args: &'a PhotoOptions,
    pub out_dir: &'a Path,
    pub weights_dir: &'a Path,
    pub dump: Option<&'a Path>,
    pub overwrite: bool,
    /// The network's crop size.
    pub size: usize,
    /// Faces per sampler batch.
    pub batch: usize,
    /// The photo's seed from its file name; faces derive theirs from it.
    pub seed_of: &'a dyn Fn(&Path) -> u64,
    /// Prints a line (above any progress bars).
    pub log: &'a dyn Fn(&str),
}

/// Restores a batch of `[B, 3, S, S]` aligned faces on [0, 1] with one seed each.
pub type RestoreFaces<'a> = dyn FnMut(&Tensor<f32>, &[u64]) -> Result<BatchResult> + 'a;

/// Keeps the faces to restore: size filter, then `--only-center-face` / `--max-faces`.
/// Returns for each detection `None` (restore) or why it is skipped.
pub fn select_faces(
    faces: &[Face],
    args: &PhotoOptions,
    width: u32,
    height: u32,
) -> Vec<Option<String>> {
    let mut why: Vec<Option<String>> = faces
        .iter()
        .map(|f| {
            let side = (f.bbox[2] - f.bbox[0]).min(f.bbox[3] - f.bbox[1]);
            (side < args.min_face_size).then(|| {
                format!(
                    "skipped (face {side:.0} px, under --min-face-size {})",
                    args.min_face_size
                )
            })
        })
        .collect();
    let usable: Vec<usize> = (0..faces.len()).filter(|&i| why[i].is_none()).collect();
    if args.only_center_face && usable.len() > 1 {
        let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
        let d = |i: usize| {
            let b = faces[i].bbox;
            ((b[0] + b[2]) / 2.0 - cx).powi(2) + ((b[1] + b[3]) / 2.0 - cy).powi(2)
        };
        let best = *usable
            .iter()
            .min_by(|&&a, &&b| d(a).total_cmp(&d(b)))
            .expect("non-empty");
        for &i in &usable {
            if i != best {
                why[i] = Some("skipped (--only-center-face)".into());
            }
        }
    } else if let Some(n) = args.max_faces {
        let area = |i: usize| {
            let b = faces[i].bbox;
            (b[2] - b[0]) * (b[3] - b[1])
        };
        let mut by_size = usable.clone();
        by_size.sort_by(|&a, &b| area(b).total_cmp(&area(a)));
        for &i in by_size.iter().skip(n) {
            why[i] = Some(format!(
                "skipped (--max-faces {n}, smaller than the first {n})"
            ));
        }
    }
    why
}

/// A photo whose faces are in the sampler's queue.
struct Pending {
    input: PathBuf,
    out: PathBuf,
    stem: String,
    seed: u64,
    photo: Photo,
    report: PhotoReport,
    /// Per face: its transform and, once restored, its crop on 0..255.
    faces: Vec<Option<(Affine, Option<Planes>)>>,
    remaining: usize,
    failed: Option<String>,
}

/// One queued face: which photo, which face, its aligned crop on [0, 1].
struct QueuedFace {
    photo: usize,
    face: usize,
    seed: u64,
    crop: Vec<f32>,
}

fn planes_to_unit(p: &Planes) -> Vec<f32> {
    p.data.iter().map(|v| v / 255.0).collect()
}

fn write_png(path: &Path, planes_unit: &Tensor<f32>) -> Result<()> {
    crate::atomic_file::write_atomic(path, &png_bytes(&to_rgb8(planes_unit))?)
}

/// Restores every whole photo in `files` and returns their report entries and, when the
/// device was lost, why the run stopped (the photos not finished are then `not run`).
pub fn restore_photos<B: Backend + Clone>(
    backend: B,
    run: &PhotoRun,
    files: &[PathBuf],
    restore: &mut RestoreFaces,
) -> Result<(Vec<ImageReport>, Option<String>)> {
    let wpath = detector_weights_path(run.args, run.weights_dir);
    if !wpath.exists() {
        bail!("face detector weights {} not found (needed for whole photos; --aligned skips detection): {}", wpath.display(), run.args.detector.how_to_get());
    }
    let det = match run.args.detector {
        DetectorKind::Mtcnn => {
            let opts = MtcnnOptions {
                min_face: run.args.min_face_size.max(12.0),
                ..MtcnnOptions::default()
            };
            Detector::Mtcnn(Mtcnn::new(backend, load_mtcnn(&wpath)?, opts))
        }
        DetectorKind::Retinaface => {
            let (variant, w) = load_retinaface(&wpath)?;
            Detector::RetinaFace(RetinaFace::new(backend, variant, w, Thresholds::default()))
        }
    };
    let faces_dir = run.out_dir.join("faces");
    let s = run.size;
    let mut reports = vec![];
    let mut pending: Vec<Option<Pending>> = vec![];
    let mut queue: VecDeque<QueuedFace> = VecDeque::new();
    let mut files = files.iter().peekable();
    // Halved for the rest of the run after an out-of-memory error.
    let mut batch = run.batch;
    loop {
        // Fill the queue until a batch is full or the photos run out.
        while queue.len() < batch {
            let Some(input) = files.next() else { break };
            let out = output_path(run.out_dir, input);
            let stem = stem_of(input);
            let seed = (run.seed_of)(input);
            let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
            if same(&out, input) {
                let e = format!(
                    "{}: the output would overwrite this input; choose another -o",
                    input.display()
                );
                (run.log)(&format!("error: {e}"));
                reports.push(ImageReport::new(input, seed, "failed").with_error(e));
                continue;
            }
            if out.exists() && !run.overwrite {
                reports.push(
                    ImageReport::new(input, seed, "skipped (output exists; --overwrite to redo)")
                        .with_output(out),
                );
                continue;
            }
            match prepare(&det, run, input, &out, &stem, seed, &faces_dir) {
                Ok(Prepared::Done(r)) => reports.push(r),
                Ok(Prepared::Queued(p, crops)) => {
                    let idx = pending.len();
                    for (face, seed, crop) in crops {
                        queue.push_back(QueuedFace {
                            photo: idx,
                            face,
                            seed,
                            crop,
                        });
                    }
                    pending.push(Some(p));
                }
                Err(e) => {
                    (run.log)(&format!("error: {e:#}"));
                    reports
                        .push(ImageReport::new(input, seed, "failed").with_error(format!("{e:#}")));
                }
            }
        }
        if queue.is_empty() {
            break;
        }
        let chunk: Vec<QueuedFace> = queue.drain(..queue.len().min(batch)).collect();
        if let Some(why) = run_batch(run, &chunk, &mut pending, restore, s, &mut batch) {
            let why = format!("the device was lost ({why}); rerun to resume");
            for p in pending.iter_mut().filter_map(Option::take) {
                let status = if p.failed.is_some() {
                    "failed"
                } else {
                    "not run"
                };
                let mut r = ImageReport::new(&p.input, p.seed, status);
                r.photo = Some(p.report);
                reports.push(r.with_error(p.failed.unwrap_or_else(|| why.clone())));
            }
            for input in files {
                let r = ImageReport::new(input, (run.seed_of)(input), "not run");
                reports.push(r.with_error(why.clone()));
            }
            return Ok((reports, Some(why)));
        }
        // Photos whose last face is done are pasted, written and dropped from memory.
        for slot in pending.iter_mut() {
            if slot.as_ref().is_some_and(|p| p.remaining == 0) {
                let p = slot.take().expect("checked");
                reports.push(finish(run, p));
            }
        }
    }
    Ok((reports, None))
}

enum Prepared {
    Done(ImageReport),
    Queued(Pending, Vec<(usize, u64, Vec<f32>)>),
}

fn prepare(
    det: &Detector<impl Backend + Clone>,
    run: &PhotoRun,
    input: &Path,
    out: &Path,
    stem: &str,
    seed: u64,
    faces_dir: &Path,
) -> Result<Prepared> {
    let photo = load_photo(input)?;
    for n in &photo.notes {
        (run.log)(&format!("warning: {}: {n}", input.display()));
    }
    let (w, h) = photo.rgb.dimensions();
    // Raw RGBA plus slack bounds the photo and its per-face crops; checked before any work.
    let need = w as u64 * h as u64 * 4 + (16 << 20);
    crate::disk_space::ensure_free(
        run.out_dir,
        need,
        &format!("the outputs of {}", input.display()),
    )?;
    let planes = Planes::from_rgb8(&photo.rgb);
    let t = Instant::now();
    // Faces smaller than the detector's smallest window cannot be found; a smaller photo has none.
    let found = if w.min(h) >= det.min_side() {
        det.detect(&RgbPlanes {
            data: &planes.data,
            width: w as usize,
            height: h as usize,
        })
        .with_context(|| format!("{}: face detection", input.display()))?
    } else {
        vec![]
    };
    let detect_seconds = t.elapsed().as_secs_f64();
    let skip = select_faces(&found, run.args, w, h);
    let mut report = PhotoReport {
        detector: run.args.detector,
        width: w,
        height: h,
        detect_seconds,
        paste_seconds: 0.0,
        faces: vec![],
    };
    let mut faces = vec![];
    let mut crops = vec![];
    for (i, (f, why)) in found.iter().zip(&skip).enumerate() {
        let face_seed = mix64(seed ^ mix64(i as u64 + 1));
        let mut fr = FaceReport {
            index: i,
            bbox: f.bbox,
            score: f.score,
            landmarks: f.landmarks,
            status: why.clone().unwrap_or_else(|| "queued".into()),
            seed: face_seed,
            transform: None,
            crop: None,
            restored: None,
            mask: None,
            trace: None,
            seconds: None,
        };
        let aligned = if why.is_none() {
            align_face_by(&planes, &f.landmarks, run.size, run.args.align_fit)
        } else {
            None
        };
        match aligned {
            Some((m, crop)) => {
                std::fs::create_dir_all(faces_dir)
                    .with_context(|| format!("cannot create {}", faces_dir.display()))?;
                let unit = Tensor::new(vec![3, run.size, run.size], planes_to_unit(&crop));
                let cp = faces_dir.join(format!("{stem}_face{i:02}_crop.png"));
                write_png(&cp, &unit)?;
                fr.crop = Some(cp);
                fr.transform = Some(m);
                crops.push((i, face_seed, unit.data));
                faces.push(Some((m, None)));
            }
            None => {
                if why.is_none() {
                    fr.status = "skipped (degenerate landmarks: no alignment)".into();
                }
                faces.push(None);
            }
        }
        report.faces.push(fr);
    }
    if crops.is_empty() {
        // Nothing to restore: the input is copied through byte for byte.
        let bytes =
            std::fs::read(input).with_context(|| format!("{}: cannot read", input.display()))?;
        crate::atomic_file::write_atomic(out, &bytes)
            .with_context(|| format!("writing {}", out.display()))?;
        let note = if found.is_empty() {
            "no face found; copied through unchanged".to_string()
        } else {
            format!(
                "{} face(s) found, none to restore; copied through unchanged",
                found.len()
            )
        };
        (run.log)(&format!("note: {}: {note}", input.display()));
        let mut r =
            ImageReport::new(input, seed, "copied (no face)").with_output(out.to_path_buf());
        r.notes = photo.notes.clone();
        r.notes.push(note);
        r.photo = Some(report);
        return Ok(Prepared::Done(r));
    }
    let remaining = crops.len();
    Ok(Prepared::Queued(
        Pending {
            input: input.to_path_buf(),
            out: out.to_path_buf(),
            stem: stem.to_string(),
            seed,
            photo,
            report,
            faces,
            remaining,
            failed: None,
        },
        crops,
    ))
}

/// Restores `chunk`; out of memory halves it (and `batch` for the rest of the run) and
/// retries. Returns the error when the device was lost.
fn run_batch(
    run: &PhotoRun,
    chunk: &[QueuedFace],
    pending: &mut [Option<Pending>],
    restore: &mut RestoreFaces,
    s: usize,
    batch: &mut usize,
) -> Option<String> {
    use crate::restore::fault::{fault_kind, Fault};
    let b = chunk.len();
    let mut data = Vec::with_capacity(b * 3 * s * s);
    for q in chunk {
        data.extend_from_slice(&q.crop);
    }
    let seeds: Vec<u64> = chunk.iter().map(|q| q.seed).collect();
    let t = Instant::now();
    let result = restore(&Tensor::new(vec![b, 3, s, s], data), &seeds);
    let mut lost = None;
    if let Err(e) = &result {
        match fault_kind(e) {
            Fault::OutOfMemory if b > 1 => {
                *batch = (b / 2).min(*batch);
                (run.log)(&format!(
                    "warning: out of memory at a batch of {b} faces ({e:#}); retrying with batch {}",
                    b / 2
                ));
                return run_batch(run, &chunk[..b / 2], pending, restore, s, batch)
                    .or_else(|| run_batch(run, &chunk[b / 2..], pending, restore, s, batch));
            }
            Fault::DeviceLost => lost = Some(format!("{e:#}")),
            _ => {}
        }
    }
    let per_face = t.elapsed().as_secs_f64() / b as f64;
    let per = 3 * s * s;
    for (k, q) in chunk.iter().enumerate() {
        let p = pending[q.photo]
            .as_mut()
            .expect("a queued face's photo is pending");
        p.remaining -= 1;
        let fr = &mut p.report.faces[q.face];
        match &result {
            Ok(res) => {
                let unit = Tensor::new(
                    vec![3, s, s],
                    res.restored.data[k * per..(k + 1) * per].to_vec(),
                );
                let rp = run
                    .out_dir
                    .join("faces")
                    .join(format!("{}_face{:02}_restored.png", p.stem, q.face));
                if let Err(e) = write_png(&rp, &unit) {
                    (run.log)(&format!("warning: writing {}: {e:#}", rp.display()));
                } else {
                    fr.restored = Some(rp);
                }
                if let Some(d) = run.dump {
                    let name = format!("{}_face{:02}", p.stem, q.face);
                    if let Err(e) = dump_face(d, &name, k, res) {
                        (run.log)(&format!("warning: dump for {name}: {e:#}"));
                    }
                }
                fr.status = "restored".into();
                fr.trace = Some(res.traces[k].clone());
                fr.seconds = Some(per_face);
                let crop = Planes {
                    channels: 3,
                    width: s,
                    height: s,
                    data: unit
                        .data
                        .iter()
                        .map(|v| v.clamp(0.0, 1.0) * 255.0)
                        .collect(),
                };
                if let Some(Some(slot)) = p.faces.get_mut(q.face) {
                    slot.1 = Some(crop);
                }
            }
            Err(e) => {
                fr.status = "failed".into();
                p.failed = Some(format!("restoring face {}: {e:#}", q.face));
            }
        }
    }
    if let Err(e) = &result {
        (run.log)(&format!("error: a batch of {b} faces failed: {e:#}"));
    }
    lost
}

/// The restorer's intermediates of one face (the `--dump` layout of aligned inputs has no
/// model handle here, so only the restorer's output and the guidance images).
fn dump_face(dir: &Path, name: &str, k: usize, res: &BatchResult) -> Result<()> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d)?;
    let s = res.rm.shape[2];
    let per = 3 * s * s;
    let plane =
        |t: &Tensor<f32>| Tensor::new(vec![3, s, s], t.data[k * per..(k + 1) * per].to_vec());
    write_png(&d.join("rm.png"), &plane(&res.rm))?;
    for (i, g) in res.guidance.iter().enumerate() {
        write_png(&d.join(format!("guidance_{}.png", i + 1)), &plane(g))?;
    }
    crate::atomic_file::write_atomic(
        &d.join("trace.json"),
        serde_json::to_string_pretty(&res.traces[k])?.as_bytes(),
    )
}

/// True for a photo whose colour channels barely differ (a black-and-white scan): the
/// diffusion prior would otherwise paint colour faces into it. Mean channel spread under
/// 2 of 255 levels (the spread of JPEG chroma noise on a grey picture is below 1).
pub fn is_grey(img: &image::RgbImage) -> bool {
    let n = (img.width() as u64 * img.height() as u64).max(1);
    let spread: u64 = img
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(|v| v as i32);
            ((r - g).abs() + (g - b).abs() + (r - b).abs()) as u64
        })
        .sum();
    (spread as f64 / n as f64 / 3.0) < 2.0
}

/// Replaces each pixel of a `[3, S, S]` crop by its luma (ITU-R BT.601 weights).
fn to_grey(crop: &mut Planes) {
    let n = crop.width * crop.height;
    for i in 0..n {
        let y = 0.299 * crop.data[i] + 0.587 * crop.data[n + i] + 0.114 * crop.data[2 * n + i];
        for c in 0..3 {
            crop.data[c * n + i] = y;
        }
    }
}

/// Pastes a photo's restored faces back (in detection order, each over the previous ones
/// where they overlap) and writes it in its own format.
fn finish(run: &PhotoRun, mut p: Pending) -> ImageReport {
    let mut r = ImageReport::new(&p.input, p.seed, "restored");
    r.notes = p.photo.notes.clone();
    if let Some(e) = p.failed.take() {
        r.photo = Some(p.report);
        return r.with_error(e);
    }
    let t = Instant::now();
    let mut img = p.photo.rgb.clone();
    let grey = is_grey(&img);
    if grey {
        r.notes
            .push("grey photo: the restored faces are turned grey too".into());
    }
    for (i, f) in p.faces.iter_mut().enumerate() {
        let Some((m, Some(crop))) = f else { continue };
        if grey {
            to_grey(crop);
        }
        match paste_face(&mut img, crop, m) {
            Some(mask) => {
                if let Some(d) = run.dump {
                    let mp = d.join(format!("{}_face{i:02}_mask.png", p.stem));
                    let (w, h) = img.dimensions();
                    let full = image::GrayImage::from_fn(w, h, |x, y| {
                        image::Luma([(mask.at(x as usize, y as usize) * 255.0).round() as u8])
                    });
                    let mut buf = std::io::Cursor::new(Vec::new());
                    let ok = full.write_to(&mut buf, image::ImageFormat::Png).is_ok()
                        && std::fs::create_dir_all(d).is_ok()
                        && crate::atomic_file::write_atomic(&mp, &buf.into_inner()).is_ok();
                    if ok {
                        p.report.faces[i].mask = Some(mp);
                    }
                }
            }
            None => p.report.faces[i].status = "restored (outside the photo: not pasted)".into(),
        }
    }
    p.report.paste_seconds = t.elapsed().as_secs_f64();
    let saved = encode_photo(
        &img,
        p.photo.alpha.as_ref(),
        p.photo.format,
        run.args.jpeg_quality,
    )
    .and_then(|bytes| crate::atomic_file::write_atomic(&p.out, &bytes));
    let n = p
        .report
        .faces
        .iter()
        .filter(|f| f.status == "restored")
        .count();
    r.notes.push(format!(
        "{n} face(s) restored and pasted back; background unchanged"
    ));
    r.photo = Some(p.report);
    match saved {
        Ok(()) => r.with_output(p.out),
        Err(e) => {
            let e = format!("writing {}: {e:#}", p.out.display());
            (run.log)(&format!("error: {e}"));
            r.with_error(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line's defaults with `f`'s changes.
    fn args(f: impl FnOnce(&mut PhotoOptions)) -> PhotoOptions {
        let mut o = PhotoOptions::default();
        f(&mut o);
        o
    }

    fn face(x: f32, y: f32, side: f32) -> Face {
        Face {
            bbox: [x, y, x + side, y + side],
            score: 0.99,
            landmarks: [[x + side / 2.0, y + side / 2.0]; 5],
        }
    }

    /// Size filter first, then the centre face or the largest N among what is left.
    #[test]
    fn selection_by_size_centre_and_count() {
        let faces = [
            face(10.0, 10.0, 40.0),
            face(180.0, 80.0, 30.0),
            face(300.0, 20.0, 60.0),
            face(5.0, 150.0, 12.0),
        ];
        let kept =
            |w: &[Option<String>]| (0..w.len()).filter(|&i| w[i].is_none()).collect::<Vec<_>>();
        let all = select_faces(&faces, &args(|_| {}), 400, 200);
        assert_eq!(kept(&all), vec![0, 1, 2]);
        assert!(
            all[3].as_ref().unwrap().contains("--min-face-size"),
            "{all:?}"
        );
        assert_eq!(
            kept(&select_faces(
                &faces,
                &args(|o| o.only_center_face = true),
                400,
                200
            )),
            vec![1]
        );
        assert_eq!(
            kept(&select_faces(
                &faces,
                &args(|o| o.max_faces = Some(2)),
                400,
                200
            )),
            vec![0, 2]
        );
        assert_eq!(
            kept(&select_faces(
                &faces,
                &args(|o| o.min_face_size = 35.0),
                400,
                200
            )),
            vec![0, 2]
        );
        assert!(select_faces(&[], &args(|o| o.only_center_face = true), 10, 10).is_empty());
    }
}
