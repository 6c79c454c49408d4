//! Training the paper's learned parts (`dynface train`): the optimiser ([`optim`]), the
//! data pipeline ([`data`]), checkpoints ([`checkpoint`]), the metrics log and loss plot
//! ([`log`]), and the stages — so far stage 1 of the standard estimator, the SDE on true
//! Gaussian blurs ([`sde`]). Gradients come from the graph's reverse mode with the weight
//! nodes in `wrt` (checked by `check::weight_vjp`).

pub mod checkpoint;
pub mod data;
pub mod log;
pub mod optim;
pub mod sde;
