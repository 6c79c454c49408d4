//! `dynface debug decode`: our decoder's pixels as `.npy` files, for reference scripts
//! (tools/reference/gen_mtcnn_golden.py) that must run on exactly what our detector sees.

use crate::atomic_file::write_atomic;
use crate::degrade::load::load_rgb8;
use crate::degrade::npy::rgb8_npy;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct DebugDecodeArgs {
    /// PNG / JPEG images, decoded as `dynface restore` decodes them (EXIF orientation applied, alpha dropped)
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Folder to write `<file name>.npy` (uint8, [H, W, 3]) into; created if missing
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Decodes each input with `load_rgb8` (the loader every detector input goes through) and
/// writes `<out>/<file name>.npy` atomically; returns the files written. Two inputs with the
/// same file name are refused before anything is written (one output would hold either).
pub fn run_debug_decode(a: &DebugDecodeArgs) -> Result<Vec<String>> {
    let mut dests: Vec<PathBuf> = vec![];
    for input in &a.inputs {
        let name = input
            .file_name()
            .with_context(|| format!("{}: not a file", input.display()))?;
        let dest = a.out.join(format!("{}.npy", name.to_string_lossy()));
        if dests.contains(&dest) {
            bail!(
                "{}: another input has the same file name; {} would be written twice",
                input.display(),
                dest.display()
            );
        }
        dests.push(dest);
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (input, dest) in a.inputs.iter().zip(&dests) {
        let img = load_rgb8(input)?.rgb;
        write_atomic(dest, &rgb8_npy(&img))?;
    }
    Ok(dests.iter().map(|f| f.display().to_string()).collect())
}
