//! Criterion benchmark of the CPU 3×3 convolution at the UNet-like shapes (forward and
//! input gradient), next to the gemm crate's f32 product at 1024³ and at each
//! convolution's own im2col dimensions. Throughput is reported in "elements" = FLOP.
//! `dynface bench --device cpu` prints the same comparison as a table.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dynface::backend::cpu::{conv2d_backward_input, conv2d_forward, gemm_into};
use dynface::bench::cpu_conv::UNET_SHAPES;
use dynface::tensor::random;
use std::time::Duration;

fn gemm_case(c: &mut Criterion, m: usize, n: usize, k: usize) {
    let mut rng = random::rng(1);
    let a = random::normal::<f32>(&mut rng, &[m, k], 1.0).data;
    let b = random::normal::<f32>(&mut rng, &[k, n], 1.0).data;
    let mut out = vec![0f32; m * n];
    let threads = rayon::current_num_threads();
    let mut group = c.benchmark_group("gemm_f32");
    group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
    group.bench_function(format!("{m}x{n}x{k}"), |bench| {
        bench.iter(|| {
            gemm_into(m, n, k, &a, k, 1, &b, n, 1, &mut out, n, 1, false, threads);
            black_box(&out);
        })
    });
    group.finish();
}

fn conv(c: &mut Criterion) {
    gemm_case(c, 1024, 1024, 1024);
    for shape in UNET_SHAPES {
        let g = shape.geom();
        let (ch, s) = (shape.channels, shape.size);
        let mut rng = random::rng(2);
        let x = random::normal::<f32>(&mut rng, &[1, ch, s, s], 1.0).data;
        let w = random::normal::<f32>(&mut rng, &[ch, ch, 3, 3], 0.05).data;
        let mut out = vec![0f32; ch * s * s];
        let mut group = c.benchmark_group(format!("conv3x3_{ch}ch_{s}"));
        group.throughput(Throughput::Elements(shape.flops() as u64));
        group.bench_function("forward", |bench| {
            bench.iter(|| {
                conv2d_forward(&g, &x, &w, None, &mut out);
                black_box(&out);
            })
        });
        // At stride 1, pad 1 dy has the shape of x.
        group.bench_function("input_grad", |bench| {
            bench.iter(|| {
                conv2d_backward_input(&g, &x, &w, &mut out);
                black_box(&out);
            })
        });
        group.finish();
        let (m, n, k) = shape.gemm_dims();
        gemm_case(c, m, n, k);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = conv
}
criterion_main!(benches);
