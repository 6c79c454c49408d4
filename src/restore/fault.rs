//! How a failed batch affects the rest of a run, read from the `BackendError` in its error
//! chain (ARCHITECTURE.md, Faults in a batch run).

/// How a failed batch affects the rest of the run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Retry with a smaller batch.
    OutOfMemory,
    /// Nothing more can run on this device: stop, keeping what is done.
    DeviceLost,
    /// This batch failed; the next may run.
    Other,
}

pub(crate) fn fault_kind(e: &anyhow::Error) -> Fault {
    use crate::backend::BackendError;
    use crate::exec::ExecError;
    let backend = e.chain().find_map(|c| {
        c.downcast_ref::<BackendError>()
            .or_else(|| match c.downcast_ref::<ExecError>() {
                Some(ExecError::Op { source, .. }) => Some(source),
                Some(ExecError::Backend(b)) => Some(b),
                _ => None,
            })
    });
    match backend {
        Some(BackendError::OutOfMemory(_)) => Fault::OutOfMemory,
        Some(BackendError::DeviceLost(_)) => Fault::DeviceLost,
        _ => Fault::Other,
    }
}
