//! The CPU convolution kernels (forward, input gradient, weight gradient) against a naive
//! nested-loop convolution, over odd sizes, strides, pads, groups and kernel sizes, in f64
//! (tight) and f32, and under several thread counts since the tiling depends on them.

use dynface::backend::cpu::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, ConvAlgo, ConvGeom,
};
use dynface::graph::Conv2dParams;
use dynface::tensor::{random, Scalar, Tensor};

#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
}

impl Case {
    fn params(&self) -> Conv2dParams {
        Conv2dParams {
            stride: self.stride,
            pad: self.pad,
            groups: self.groups,
        }
    }
    fn x_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    fn w_shape(&self) -> [usize; 4] {
        [self.o, self.c / self.groups, self.k, self.k]
    }
    fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }
    fn y_shape(&self) -> [usize; 4] {
        let (oh, ow) = self.out_hw();
        [self.n, self.o, oh, ow]
    }
}

/// Calls `f(n, o, c, oy, ox, xi, wi, yi)` for every multiply-add of the convolution, with
/// flat indices of x, w and y; padding taps are skipped. Shared by the three references so
/// they cannot disagree on geometry.
fn for_each_tap(cs: &Case, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = cs.out_hw();
    let (cg, og) = (cs.c / cs.groups, cs.o / cs.groups);
    for n in 0..cs.n {
        for o in 0..cs.o {
            let gi = o / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((n * cs.o + o) * oh + oy) * ow + ox;
                    for ci in 0..cg {
                        let c = gi * cg + ci;
                        for ki in 0..cs.k {
                            for kj in 0..cs.k {
                                let iy = (oy * cs.stride + ki) as isize - cs.pad as isize;
                                let ix = (ox * cs.stride + kj) as isize - cs.pad as isize;
                                if iy < 0 || ix < 0 || iy >= cs.h as isize || ix >= cs.w as isize {
                                    continue;
                                }
                                let xi = ((n * cs.c + c) * cs.h + iy as usize) * cs.w + ix as usize;
                                let wi = ((o * cg + ci) * cs.k + ki) * cs.k + kj;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn naive_forward(cs: &Case, x: &[f64], w: &[f64], b: &[f64]) -> Vec<f64> {
    let (oh, ow) = cs.out_hw();
    let mut y: Vec<f64> = (0..cs.n * cs.o * oh * ow)
        .map(|i| b[(i / (oh * ow)) % cs.o])
        .collect();
    for_each_tap(cs, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

fn naive_backward_input(cs: &Case, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; cs.x_shape().iter().product()];
    for_each_tap(cs, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

fn naive_backward_weight(cs: &Case, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; cs.w_shape().iter().product()];
    for_each_tap(cs, |xi, wi, yi| dw[wi] += dy[yi] * x[xi]);
    dw
}

fn to_f64<T: Scalar>(t: &Tensor<T>) -> Vec<f64> {
    t.data.iter().map(|v| v.as_f64()).collect()
}

/// Runs the three kernels in `T` under every lowering and compares each with the f64
/// naive result.
fn check<T: Scalar>(cs: &Case, seed: u64, tol: f64) {
    for algo in [ConvAlgo::Auto, ConvAlgo::Im2col, ConvAlgo::Shifted] {
        check_algo::<T>(cs, algo, seed, tol);
    }
}

fn check_algo<T: Scalar>(cs: &Case, algo: ConvAlgo, seed: u64, tol: f64) {
    let mut rng = random::rng(seed);
    let x: Tensor<T> = random::normal(&mut rng, &cs.x_shape(), 1.0);
    let w: Tensor<T> = random::normal(&mut rng, &cs.w_shape(), 0.3);
    let b: Tensor<T> = random::normal(&mut rng, &[cs.o], 1.0);
    let dy: Tensor<T> = random::normal(&mut rng, &cs.y_shape(), 1.0);
    let g = ConvGeom::new(&cs.x_shape(), &cs.w_shape(), &cs.params()).with_algo(algo);

    // Outputs start as unrelated values: the kernels must overwrite, not accumulate into,
    // their destination (the executor reuses arena memory).
    let mut y: Tensor<T> = random::normal(&mut rng, &cs.y_shape(), 5.0);
    conv2d_forward(&g, &x.data, &w.data, Some(&b.data), &mut y.data);
    let y_ref = naive_forward(cs, &to_f64(&x), &to_f64(&w), &to_f64(&b));
    let y_ref = Tensor::new(cs.y_shape().to_vec(), y_ref);
    let e = y.cast::<f64>().rel_err(&y_ref);
    assert!(
        e <= tol,
        "forward {cs:?} in {}: rel err {e:e} > {tol:e}",
        T::name()
    );

    let mut dx: Tensor<T> = random::normal(&mut rng, &cs.x_shape(), 5.0);
    conv2d_backward_input(&g, &dy.data, &w.data, &mut dx.data);
    let dx_ref = naive_backward_input(cs, &to_f64(&dy), &to_f64(&w));
    let dx_ref = Tensor::new(cs.x_shape().to_vec(), dx_ref);
    let e = dx.cast::<f64>().rel_err(&dx_ref);
    assert!(
        e <= tol,
        "backward-input {cs:?} in {}: rel err {e:e} > {tol:e}",
        T::name()
    );

    let mut dw: Tensor<T> = random::normal(&mut rng, &cs.w_shape(), 5.0);
    conv2d_backward_weight(&g, &x.data, &dy.data, &mut dw.data);
    let dw_ref = naive_backward_weight(cs, &to_f64(&x), &to_f64(&dy));
    let dw_ref = Tensor::new(cs.w_shape().to_vec(), dw_ref);
    let e = dw.cast::<f64>().rel_err(&dw_ref);
    assert!(
        e <= tol,
        "backward-weight {cs:?} in {}: rel err {e:e} > {tol:e}",
        T::name()
    );
}

/// Every combination of stride 1/2, pad 0/1, groups 1/2, kernel 1/3 on odd sizes.
fn small_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for &k in &[1, 3] {
        for &stride in &[1, 2] {
            for &pad in &[0, 1] {
                for &groups in &[1, 2] {
                    out.push(Case {
                        n: 2,
                        c: 6,
                        o: 4,
                        h: 9,
                        w: 7,
                        k,
                        stride,
                        pad,
                        groups,
                    });
                }
            }
        }
    }
    out
}

/// Shapes that split into several output tiles (by position and by channel) in the
/// stride-1 path, plus a 5×5 kernel with pad 2.
fn tiled_cases() -> Vec<Case> {
    let base = Case {
        n: 1,
        c: 24,
        o: 20,
        h: 61,
        w: 67,
        k: 3,
        stride: 1,
        pad: 1,
        groups: 1,
    };
    vec![
        base,
        Case {
            c: 72,
            o: 200,
            h: 11,
            w: 13,
            ..base
        },
        Case {
            n: 2,
            c: 8,
            o: 6,
            h: 13,
            w: 10,
            k: 5,
            pad: 2,
            groups: 2,
            ..base
        },
    ]
}

fn in_pool(threads: usize, f: impl FnOnce() + Send) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f);
}

#[test]
fn small_cases_match_naive_f64() {
    for (i, cs) in small_cases().iter().enumerate() {
        check::<f64>(cs, 100 + i as u64, 1e-12);
    }
}

#[test]
fn small_cases_match_naive_f32() {
    for (i, cs) in small_cases().iter().enumerate() {
        check::<f32>(cs, 200 + i as u64, 1e-5);
    }
}

#[test]
fn tiled_cases_match_naive_under_several_thread_counts() {
    for threads in [1, 2, 3] {
        in_pool(threads, || {
            for (i, cs) in tiled_cases().iter().enumerate() {
                check::<f64>(cs, 300 + i as u64, 1e-12);
                check::<f32>(cs, 400 + i as u64, 1e-5);
            }
        });
    }
}
