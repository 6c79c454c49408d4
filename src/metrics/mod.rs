//! Full-reference image quality: PSNR and SSIM on 8-bit RGB images, matching
//! scikit-image's definitions (see `ssim.rs` for the exact SSIM settings).

mod psnr;
mod ssim;

pub use psnr::{mse, psnr};
pub use ssim::ssim;
