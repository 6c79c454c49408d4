//! Convolution throughput at the UNet's shapes on the GPU (the `dynface bench --device cuda`
//! numbers): forward, input-gradient and weight-gradient GFLOP/s, batch 1 and 8. Prints the
//! table; asserts only that every time is positive and finite. Skips without a GPU.

use dynface::backend::cuda::bench::{format_rows, run_conv_bench, ConvBenchOptions};
use dynface::backend::cuda::CudaBackend;

#[test]
fn conv_gflops_at_unet_shapes() {
    let be = match CudaBackend::new() {
        Ok(b) => b,
        Err(why) => {
            dynface::check::skip::skip("conv bench", dynface::check::skip::SkipReason::NoGpu, &why);
            return;
        }
    };
    println!("device: {}", be.info());
    let rows = run_conv_bench(&be, &ConvBenchOptions::default()).unwrap();
    print!("{}", format_rows(&rows));
    for r in &rows {
        for ms in [r.fwd_ms, r.bwd_input_ms, r.bwd_weight_ms] {
            assert!(ms.is_finite() && ms > 0.0, "{r:?}");
        }
    }
}
