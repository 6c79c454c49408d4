//! What the whole-photo tests need from outside the repository: facenet-pytorch's wheel
//! (MTCNN's weights, fetched once with `pip download` into the target folder) and the
//! shared photos. Without CI a missing one skips the test, saying why; in CI (`CI=true`)
//! it fails, because neither needs a GPU.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const WHEEL: &str = "facenet_pytorch-2.6.0-py3-none-any.whl";

use dynface::check::skip::skip;
pub use dynface::check::skip::SkipReason;

/// `None` after a skip record (`check::skip`: counted by test.sh); a panic in CI.
pub fn missing(reason: SkipReason, what: &str) -> Option<PathBuf> {
    skip("whole photos", reason, what);
    None
}

/// The wheel: `$DYNFACE_MTCNN_WHEEL`, or `target/tmp/wheels/`, downloaded there once.
pub fn mtcnn_wheel() -> Option<PathBuf> {
    static W: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = W.get_or_init(|| {
        if let Ok(p) = std::env::var("DYNFACE_MTCNN_WHEEL") {
            return Ok(PathBuf::from(p));
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wheels");
        let p = dir.join(WHEEL);
        if p.exists() {
            return Ok(p);
        }
        // Test binaries run at the same time: each downloads into its own folder and
        // renames the finished wheel into place, so none reads a half-written one.
        let own = dir.join(format!("part-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&own);
        for pip in [&["-m", "pip"][..], &[][..]] {
            let (prog, pre) = if pip.is_empty() { ("pip", pip) } else { ("python3", pip) };
            let out = Command::new(prog)
                .args(pre)
                .args(["download", "--no-deps", "facenet-pytorch==2.6.0", "-d"])
                .arg(&own)
                .output();
            if matches!(&out, Ok(o) if o.status.success())
                && std::fs::rename(own.join(WHEEL), &p).is_ok()
            {
                let _ = std::fs::remove_dir_all(&own);
                return Ok(p);
            }
        }
        let _ = std::fs::remove_dir_all(&own);
        Err(format!(
            "facenet-pytorch's wheel (MTCNN weights) not found and `pip download` failed; set DYNFACE_MTCNN_WHEEL or put {WHEEL} in {}",
            dir.display()
        ))
    });
    match r {
        Ok(p) => Some(p.clone()),
        Err(why) => missing(SkipReason::NoFixture, why),
    }
}

/// `../shared/data/photos`.
pub fn photos_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/photos");
    if d.is_dir() {
        Some(d)
    } else {
        missing(
            SkipReason::NoSharedData,
            &format!(
                "{} not found (the shared photos are outside the repository)",
                d.display()
            ),
        )
    }
}

/// The photos and how many faces a person counts in each (looked at one by one):
pub const PHOTO_FACES: &[(&str, usize)] = &[
    // four people standing side by side, all frontal (the figure far behind them has
    // turned away: no face to see)
    ("codeformer_00.jpg", 4),
    // four young men, three behind and one in front (the hands at the edges are theirs)
    ("codeformer_01.jpg", 4),
    // four men in a row, frontal
    ("codeformer_02.png", 4),
    // one woman facing the camera; the person at the right edge shows only hair and a
    // cheek from behind
    ("codeformer_03.jpg", 1),
    // two boys, frontal
    ("codeformer_06.png", 2),
    // a man, a woman and a girl, full figure, small faces
    ("gfpgan_10045.png", 3),
    // a side-by-side of the same person as a child and as an adult
    ("gfpgan_Blake_Lively.jpg", 2),
];
