//! Free space on the file system of a folder, checked before large writes so a full disk
//! gives one clear message up front instead of a failure halfway through a batch.

use anyhow::{bail, Result};
use std::path::Path;

/// Bytes available to this (unprivileged) user on the file system holding `dir`, or `None`
/// when the platform cannot tell. `DYNFACE_FAULT_FREE_BYTES` overrides it (tests).
pub fn available_bytes(dir: &Path) -> Option<u64> {
    if let Some(v) = crate::backend::fault::free_bytes_override() {
        return Some(v);
    }
    statvfs_available(dir)
}

#[cfg(unix)]
fn statvfs_available(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
fn statvfs_available(_dir: &Path) -> Option<u64> {
    None
}

/// Fails when `dir`'s file system has less than `need` bytes free (plus a 1% / 16 MiB
/// reserve so the write does not fill the disk to the last block). `what` says what would
/// be written. Unknown free space passes: the write itself then reports any failure.
pub fn ensure_free(dir: &Path, need: u64, what: &str) -> Result<()> {
    let Some(free) = available_bytes(dir) else {
        return Ok(());
    };
    let reserve = (need / 100).max(16 << 20);
    if free < need.saturating_add(reserve) {
        bail!(
            "not enough free disk space in {} for {what}: need about {} MB (+{} MB reserve), {} MB free",
            dir.display(),
            need.div_ceil(1 << 20),
            reserve >> 20,
            free >> 20
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_real_free_space_and_refuses_impossible_writes() {
        let dir = std::env::temp_dir();
        if crate::backend::fault::free_bytes_override().is_some() {
            crate::check::skip::skip(
                "free space",
                crate::check::skip::SkipReason::Disabled,
                "DYNFACE_FAULT_FREE_BYTES is set in this environment",
            );
            return;
        }
        let free = available_bytes(&dir).expect("statvfs works on the temp dir");
        assert!(free > 0);
        ensure_free(&dir, 1, "one byte").expect("one byte fits");
        let err = ensure_free(&dir, free, "everything")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not enough free disk space"), "{err}");
        assert!(err.contains("everything"), "{err}");
    }
}
