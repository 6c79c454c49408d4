//! Fault injection for tests of the recovery paths of a batch run: an out-of-memory device,
//! a failing batch, a lost device, a full disk. Real faults need a GPU or a full disk; these
//! hooks make the same errors appear on any machine, at the same places the real ones do.
//! Each is read from the environment once per process; unset means no fault.
//!
//! - `DYNFACE_FAULT_ALLOC_LIMIT=BYTES`: any backend arena larger than BYTES fails to
//!   allocate with [`BackendError::OutOfMemory`], as `cuMemAlloc` does on a full GPU.
//! - `DYNFACE_FAULT_BATCH=N:error,M:lost`: the N-th batch (1-based, counted over the run,
//!   retries included) fails with a device error that leaves the device usable; the M-th
//!   with one that loses it (as a CUDA illegal-address error does).
//! - `DYNFACE_FAULT_DEVICE_LOST=DEV:N,...`: worker DEV of a device list (0-based, in the
//!   order `--device` names them) loses its device at its own N-th batch (1-based, retries
//!   included); the other devices are untouched.
//! - `DYNFACE_FAULT_FREE_BYTES=BYTES`: the free space reported for any folder.

use super::{BResult, BackendError};
use std::sync::OnceLock;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn alloc_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| env_u64("DYNFACE_FAULT_ALLOC_LIMIT"))
}

/// Called by every backend's `alloc` before it allocates `bytes`.
pub fn check_alloc(bytes: u64) -> BResult<()> {
    match alloc_limit() {
        Some(limit) if bytes > limit => Err(BackendError::OutOfMemory(format!(
            "cannot allocate {bytes} bytes (DYNFACE_FAULT_ALLOC_LIMIT={limit})"
        ))),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchFault {
    Error,
    Lost,
}

fn parse_batch_faults(spec: &str) -> Vec<(u64, BatchFault)> {
    spec.split(',')
        .filter_map(|item| {
            let (n, kind) = item.trim().split_once(':')?;
            let kind = match kind.trim() {
                "error" => BatchFault::Error,
                "lost" => BatchFault::Lost,
                _ => return None,
            };
            Some((n.trim().parse().ok()?, kind))
        })
        .collect()
}

fn batch_faults() -> &'static [(u64, BatchFault)] {
    static FAULTS: OnceLock<Vec<(u64, BatchFault)>> = OnceLock::new();
    FAULTS.get_or_init(|| {
        std::env::var("DYNFACE_FAULT_BATCH")
            .map(|s| parse_batch_faults(&s))
            .unwrap_or_default()
    })
}

/// Called before the `n`-th batch (1-based) of a run runs on the backend.
pub fn check_batch(n: u64) -> BResult<()> {
    match batch_faults().iter().find(|(k, _)| *k == n) {
        Some((_, BatchFault::Error)) => Err(BackendError::Device(format!(
            "injected device error in batch {n} (DYNFACE_FAULT_BATCH)"
        ))),
        Some((_, BatchFault::Lost)) => Err(BackendError::DeviceLost(format!(
            "injected device loss in batch {n} (DYNFACE_FAULT_BATCH)"
        ))),
        None => Ok(()),
    }
}

/// `DEV:N` pairs; items that do not parse are ignored, as in `DYNFACE_FAULT_BATCH`.
fn parse_device_losses(spec: &str) -> Vec<(usize, u64)> {
    spec.split(',')
        .filter_map(|item| {
            let (d, n) = item.trim().split_once(':')?;
            Some((d.trim().parse().ok()?, n.trim().parse().ok()?))
        })
        .collect()
}

fn device_losses() -> &'static [(usize, u64)] {
    static LOSSES: OnceLock<Vec<(usize, u64)>> = OnceLock::new();
    LOSSES.get_or_init(|| {
        std::env::var("DYNFACE_FAULT_DEVICE_LOST")
            .map(|s| parse_device_losses(&s))
            .unwrap_or_default()
    })
}

/// Called before worker `device`'s `n`-th batch (1-based, counted per device).
pub fn check_device_batch(device: usize, n: u64) -> BResult<()> {
    if device_losses().contains(&(device, n)) {
        return Err(BackendError::DeviceLost(format!(
            "injected loss of device {device} in its batch {n} (DYNFACE_FAULT_DEVICE_LOST)"
        )));
    }
    Ok(())
}

/// The free-space override, when set.
pub fn free_bytes_override() -> Option<u64> {
    static FREE: OnceLock<Option<u64>> = OnceLock::new();
    *FREE.get_or_init(|| env_u64("DYNFACE_FAULT_FREE_BYTES"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_fault_specs_parse_and_ignore_garbage() {
        assert_eq!(
            parse_batch_faults("2:error, 5:lost,x:error,3:melt,7"),
            vec![(2, BatchFault::Error), (5, BatchFault::Lost)]
        );
        assert!(parse_batch_faults("").is_empty());
    }

    #[test]
    fn device_loss_specs_parse_and_ignore_garbage() {
        assert_eq!(
            parse_device_losses("1:2, 0:5,x:1,3,2:y"),
            vec![(1, 2), (0, 5)]
        );
        assert!(parse_device_losses("").is_empty());
    }
}
