//! Atomic file replacement: write `NAME.tmp` beside the target, fsync, rename, so a
//! crash never leaves a half-written file under the final name.

use super::error::{Result, WeightsError};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary path used while writing `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Runs `write` on `NAME.tmp`, then syncs and renames it to `path`.
/// On failure the temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    let outcome = write(&tmp).and_then(|()| {
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| WeightsError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| WeightsError::io(path, e))
    });
    if outcome.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return outcome;
    }
    sync_parent(path);
    Ok(())
}

/// Writes raw bytes atomically.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, |tmp| {
        let mut f = File::create(tmp).map_err(|e| WeightsError::io(tmp, e))?;
        f.write_all(bytes).map_err(|e| WeightsError::io(tmp, e))
    })
}

/// Makes the rename durable; best effort because not every filesystem allows
/// opening a directory.
pub fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}
