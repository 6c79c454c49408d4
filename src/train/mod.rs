//! Training the paper's learned parts (`dynface train`): the optimiser ([`optim`]), the
//! data pipeline ([`data`]), checkpoints ([`checkpoint`]), the metrics log and loss plot
//! ([`log`]), the loop every stage shares ([`stage`]), and the stages: the SDE on true
//! Gaussian blurs ([`sde`]), SE end to end with σ* labels ([`se`], [`labels`]) and DGSA
//! ([`dgsa`], [`swt`], DISTS's weights in [`dists_weights`]). Gradients come from the graph's reverse mode with the weight nodes
//! in `wrt` (checked by `check::weight_vjp`).

pub mod checkpoint;
pub mod data;
pub mod dgsa;
pub mod dists_weights;
pub mod export;
pub mod labels;
pub mod log;
pub mod optim;
pub mod sde;
pub mod se;
pub mod stage;
pub mod swt;
