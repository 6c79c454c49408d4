//! The device step against the host step. On the f64 CPU backend the sampler with the update
//! in the step graph (`UpdateOn::Device`: x_t and σ_i never leave the backend) must give the
//! same sample, σ_i and loss trace as the host f64 update (`UpdateOn::Host`, the reference),
//! for DDIM and DDPM, guided by two images with σ refinement and a DGSA scale map with random
//! weights, on a batch whose images start at different steps. And each image of such a batch
//! must come out as it does when sampled alone on its own random stream.
//!
//! The denoiser is a small stand-in (3×3 conv + timestep term + tanh, 2C output channels for
//! the learned variance) so that the gradient goes through a real convolution.

use dynface::backend::cpu::CpuBackend;
use dynface::backend::cuda::emu::EmuBackend;
use dynface::backend::Backend;
use dynface::exec::eval;
use dynface::graph::{Graph, NodeId, UnaryOp};
use dynface::models::dgsa::{self, DgsaConfig};
use dynface::sampler::{
    DenoiserInputs, Eta, Guidance, SampleOutput, Sampler, SamplerConfig, ScaleBuilder,
    ScaleContext, ScaleInputs, UnitScale, UpdateOn,
};
use dynface::tensor::{random, Tensor};
use std::collections::HashMap;

const C: usize = 3;
const HW: usize = 12;

/// Relative error allowed between the paths (they are designed to agree bit for bit).
const TOL: f64 = 1e-10;

fn denoiser(g: &mut Graph, ins: &DenoiserInputs) -> dynface::graph::Result<NodeId> {
    let w = g.constant("den.w", &[2 * C, C, 3, 3]);
    let bias = g.constant("den.b", &[2 * C]);
    let tw = g.constant("den.tw", &[1, 2 * C, 1, 1]);
    let h = g.conv2d(ins.x, w, Some(bias), 1, 1, 1)?;
    let b = g.shape(ins.t)[0];
    let t = g.affine(ins.t, 0.001, 0.0)?;
    let t = g.reshape(t, &[b, 1, 1, 1])?;
    let tt = g.mul(t, tw)?;
    let h = g.add(h, tt)?;
    g.unary(UnaryOp::Tanh, h)
}

fn dgsa_cfg() -> DgsaConfig {
    DgsaConfig {
        width: 4,
        emb_dim: 8,
        elu_alpha: 1.0,
    }
}

/// Random weights for the denoiser and DGSA (under `dgsa.`). DGSA's last bias is 0.5 so S
/// spreads over (0, 1) instead of sitting at a clamp bound.
fn weights(seed: u64) -> HashMap<String, Tensor<f32>> {
    let mut rng = random::rng(seed);
    let mut m = HashMap::new();
    let mut put = |name: String, shape: &[usize], std: f64, rng: &mut _| {
        m.insert(name, random::normal::<f32>(rng, shape, std));
    };
    put("den.w".into(), &[2 * C, C, 3, 3], 0.3, &mut rng);
    put("den.b".into(), &[2 * C], 0.1, &mut rng);
    put("den.tw".into(), &[1, 2 * C, 1, 1], 0.5, &mut rng);
    for (k, shape) in dgsa::checkpoint_spec(&dgsa_cfg()) {
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        put(
            format!("dgsa.{k}"),
            &shape,
            0.5 / (fan_in as f64).sqrt(),
            &mut rng,
        );
    }
    m.insert(
        "dgsa.conv3.bias".into(),
        Tensor::new(vec![3], vec![0.5, 0.4, 0.6]),
    );
    m
}

fn scale_builder() -> ScaleBuilder<'static> {
    Box::new(|g: &mut Graph, si: &ScaleInputs| {
        dgsa::build(g, &dgsa_cfg(), si.guidance[0], si.x0, si.t, "dgsa.")
    })
}

/// DGSA as a host-side scale map, the way the pipeline ran it before the device step: its
/// own graph, fed x̂₀ read back from the sampler.
fn host_dgsa<'a>(
    w: &'a HashMap<String, Tensor<f32>>,
    stats: &'a mut Vec<f64>,
) -> impl FnMut(&ScaleContext) -> anyhow::Result<Option<Tensor<f64>>> + 'a {
    move |ctx| {
        let shape = ctx.x0.shape.clone();
        let b = shape[0];
        let mut g = Graph::new();
        let y = g.input("y", &shape);
        let x0 = g.input("x0", &shape);
        let t = g.input("t", &[b]);
        let s = dgsa::build(&mut g, &dgsa_cfg(), y, x0, t, "dgsa.")?;
        let y1 = Tensor::new(
            shape.clone(),
            ctx.guidance[0].data.iter().map(|v| 2.0 * v - 1.0).collect(),
        );
        let tt = Tensor::new(vec![b], vec![ctx.t as f64; b]);
        let out = eval(
            CpuBackend::<f64>::new(),
            &g,
            &[s],
            &[("y", &y1), ("x0", ctx.x0), ("t", &tt)],
            w,
        )?;
        let s = out.into_iter().next().expect("one output");
        let inside = s.data.iter().filter(|v| **v > 0.0 && **v < 1.0).count();
        stats.push(inside as f64 / s.data.len() as f64);
        Ok(Some(s))
    }
}

/// Two guidance images per image of a batch of 3, each image with its own σ_i and start
/// steps (original indices), so the three images join the chain at different steps.
fn guidance(seed: u64, batch: usize) -> Guidance {
    let mut rng = random::rng(seed);
    let shape = [batch, C, HW, HW];
    let images = (0..2)
        .map(|_| random::uniform::<f64>(&mut rng, &shape, 0.05, 0.95))
        .collect();
    let all_sigma = [vec![2.2, 1.4, 3.1], vec![1.1, 0.7, 1.6]];
    let all_start = [vec![700, 520, 330], vec![560, 400, 250]];
    Guidance {
        images,
        sigma: all_sigma.iter().map(|v| v[..batch].to_vec()).collect(),
        start: all_start.iter().map(|v| v[..batch].to_vec()).collect(),
    }
}

/// Image `j` of a batch as a batch of one.
fn pick(gd: &Guidance, j: usize) -> Guidance {
    let per = C * HW * HW;
    Guidance {
        images: gd
            .images
            .iter()
            .map(|t| Tensor::new(vec![1, C, HW, HW], t.data[j * per..(j + 1) * per].to_vec()))
            .collect(),
        sigma: gd.sigma.iter().map(|v| vec![v[j]]).collect(),
        start: gd.start.iter().map(|v| vec![v[j]]).collect(),
    }
}

fn config(sampler: &str, update_on: UpdateOn) -> SamplerConfig {
    SamplerConfig {
        sampler: sampler.into(),
        num_guidance: 2,
        weights: Some(vec![0.65, 0.35]),
        zeta: 0.4,
        // Large enough that σ moves visibly; bounds exactly representable in f32.
        zeta_sigma: 0.5,
        sigma_min: 0.5,
        sigma_max: 4.0,
        eta: Eta::SigmaHatOver10,
        update_on,
        ..Default::default()
    }
}

fn sampler(
    cfg: SamplerConfig,
    batch: usize,
    w: &HashMap<String, Tensor<f32>>,
    in_graph_scale: bool,
) -> Sampler<CpuBackend<f64>> {
    sampler_on(CpuBackend::<f64>::new(), cfg, batch, w, in_graph_scale)
}

fn sampler_on<B: Backend>(
    be: B,
    cfg: SamplerConfig,
    batch: usize,
    w: &HashMap<String, Tensor<f32>>,
    in_graph_scale: bool,
) -> Sampler<B> {
    Sampler::with_scale(
        be,
        cfg,
        [batch, C, HW, HW],
        denoiser,
        in_graph_scale.then(scale_builder),
        |k| w.get(k).cloned(),
    )
    .unwrap()
}

fn rel(a: &[f64], b: &[f64]) -> f64 {
    Tensor::new(vec![a.len()], a.to_vec()).rel_err(&Tensor::new(vec![b.len()], b.to_vec()))
}

/// Host reference (host DGSA map) vs device step (DGSA in the graph): x, σ, loss trace.
fn compare(sampler_spec: &str, tweak: impl Fn(&mut SamplerConfig)) -> (f64, f64) {
    let w = weights(11);
    let gd = guidance(12, 3);
    let mut host_cfg = config(sampler_spec, UpdateOn::Host);
    tweak(&mut host_cfg);
    let dev_cfg = SamplerConfig {
        update_on: UpdateOn::Device,
        ..host_cfg.clone()
    };
    let mut stats = vec![];
    let host: SampleOutput = sampler(host_cfg, 3, &w, false)
        .sample(&gd, &mut host_dgsa(&w, &mut stats), 5)
        .unwrap();
    let dev = sampler(dev_cfg, 3, &w, true)
        .sample(&gd, &mut UnitScale, 5)
        .unwrap();
    // The scale map is not trivial: most of S lies strictly inside (0, 1).
    let inside = stats.iter().sum::<f64>() / stats.len() as f64;
    assert!(
        inside > 0.5,
        "S inside (0,1) for only {inside} of the pixels"
    );
    assert_eq!(host.trace.len(), dev.trace.len());
    let ex = dev.x.rel_err(&host.x);
    let s_host: Vec<f64> = host.sigma.concat();
    let s_dev: Vec<f64> = dev.sigma.concat();
    let es = rel(&s_dev, &s_host);
    let mut el: f64 = 0.0;
    for (a, b) in host.trace.iter().zip(&dev.trace) {
        assert_eq!(a.t, b.t);
        el = el.max((a.loss.unwrap() - b.loss.unwrap()).abs() / a.loss.unwrap().abs());
        el = el.max(rel(&b.sigma.concat(), &a.sigma.concat()));
    }
    println!(
        "{sampler_spec}: device vs host: x rel err {ex:.3e}, σ rel err {es:.3e}, \
         trace (loss, σ) max rel err {el:.3e}; {} steps; S inside (0,1): {inside:.2}",
        host.trace.len()
    );
    assert!(ex <= TOL && es <= TOL && el <= TOL);
    println!("σ initial {:?} → final {:?}", gd.sigma, dev.sigma);
    // The run did something: σ refined, images differ from their start and each other.
    let init: Vec<f64> = gd.sigma.concat();
    assert!(rel(&s_dev, &init) > 1e-3, "σ did not move");
    assert!(host.x.data.iter().all(|v| v.is_finite()));
    (ex, es)
}

#[test]
fn ddim_device_step_matches_host_step() {
    compare("ddim20", |_| {});
}

#[test]
fn ddpm_learned_variance_device_step_matches_host_step() {
    compare("25", |c| {
        c.variance = dynface::diffusion::VarianceMode::LearnedRange;
    });
}

#[test]
fn ddpm_fixed_variance_fast_guidance_device_step_matches_host_step() {
    compare("25", |c| {
        c.variance = dynface::diffusion::VarianceMode::FixedLarge;
        c.fast_guidance = true;
        c.clip_x0 = false;
    });
}

#[test]
fn unguided_device_step_matches_host_step() {
    let w = weights(21);
    let mk = |u: UpdateOn| SamplerConfig {
        num_guidance: 0,
        weights: None,
        sampler: "ddim15".into(),
        update_on: u,
        ..Default::default()
    };
    let host = sampler(mk(UpdateOn::Host), 2, &w, false)
        .sample_unguided(9)
        .unwrap();
    let dev = sampler(mk(UpdateOn::Device), 2, &w, false)
        .sample_unguided(9)
        .unwrap();
    let e = dev.x.rel_err(&host.x);
    println!("unguided ddim15: device vs host x rel err {e:.3e}");
    assert!(e <= TOL);
    assert!(host.x.data.iter().any(|v| v.abs() > 0.1));
}

/// Per-image start steps, σ, η and streams: each image of a batch equals that image sampled
/// alone with its own stream.
#[test]
fn batch_images_equal_images_sampled_alone() {
    let w = weights(31);
    let gd = guidance(32, 3);
    let cfg = config("ddim20", UpdateOn::Device);
    let streams = [0u64, 1, 2];
    let batch = sampler(cfg.clone(), 3, &w, true)
        .sample_streams(&gd, &mut UnitScale, 77, &streams)
        .unwrap();
    let per = C * HW * HW;
    let mut worst: f64 = 0.0;
    let mut lens = vec![];
    for j in 0..3 {
        let mut one = sampler(cfg.clone(), 1, &w, true);
        let alone = one
            .sample_streams(&pick(&gd, j), &mut UnitScale, 77, &[streams[j]])
            .unwrap();
        let e = rel(&alone.x.data, &batch.x.data[j * per..(j + 1) * per]);
        let es = rel(
            &alone.sigma.concat(),
            &batch.sigma.iter().map(|v| v[j]).collect::<Vec<_>>(),
        );
        println!("image {j}: alone vs in the batch: x rel err {e:.3e}, σ rel err {es:.3e}");
        worst = worst.max(e).max(es);
        // Each image runs from its own start step (they differ across the batch).
        let top = one
            .schedule()
            .position_at_or_below(gd.start[0][j].max(gd.start[1][j]))
            .unwrap();
        assert_eq!(alone.trace.len(), top + 1);
        lens.push(alone.trace.len());
    }
    assert!(worst <= TOL);
    assert!(lens[0] > lens[1] && lens[1] > lens[2], "{lens:?}");
    assert_eq!(batch.trace.len(), lens[0]);
    // Different streams give different images.
    let other = sampler(cfg, 3, &w, true)
        .sample_streams(&gd, &mut UnitScale, 77, &[5, 6, 7])
        .unwrap();
    assert!(other.x.max_abs_diff(&batch.x) > 1e-3);
}

#[test]
fn device_step_rejects_a_host_scale_map_and_a_second_scale() {
    let w = weights(41);
    let gd = guidance(42, 2);
    let mut stats = vec![];
    let err = sampler(config("ddim20", UpdateOn::Device), 2, &w, false)
        .sample(&gd, &mut host_dgsa(&w, &mut stats), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("update_on = host"), "{err}");
    let err = sampler(config("ddim20", UpdateOn::Host), 2, &w, true)
        .sample(&gd, &mut host_dgsa(&w, &mut stats), 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("scale map in its step graph"), "{err}");
    let mut s = sampler(config("ddim20", UpdateOn::Device), 2, &w, true);
    let err = s
        .sample_streams(&gd, &mut UnitScale, 1, &[0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("streams"), "{err}");
    // The CPU backend does not record graphs: the step runs uncaptured, and says why.
    s.sample(&gd, &mut UnitScale, 1).unwrap();
    let why = s.capture_status().unwrap_err();
    assert!(why.contains("does not record"), "{why}");
}

/// The device step through the CUDA launch code and kernels (on the CPU emulator of the
/// kernels when there is no GPU): the new update ops, masks and the state copies, in f32,
/// against the f64 host step.
#[test]
fn device_step_on_the_cuda_kernels_matches_the_f64_host_step() {
    if std::env::var_os("DYNFACE_NO_EMU").is_some() {
        dynface::check::skip::skip(
            "device_step_on_the_cuda_kernels",
            dynface::check::skip::SkipReason::Disabled,
            "DYNFACE_NO_EMU is set",
        );
        return;
    }
    let emu = match EmuBackend::build() {
        Ok(e) => e,
        Err(why) => {
            dynface::check::skip::skip(
                "device_step_on_the_cuda_kernels",
                dynface::check::skip::SkipReason::NoCompiler,
                &format!("no kernel emulator: {why}"),
            );
            return;
        }
    };
    let w = weights(51);
    let gd = guidance(52, 3);
    let host = sampler(config("ddim20", UpdateOn::Host), 3, &w, true)
        .sample(&gd, &mut UnitScale, 6)
        .unwrap();
    let mut dev = sampler_on(emu, config("ddim20", UpdateOn::Device), 3, &w, true);
    let out = dev.sample(&gd, &mut UnitScale, 6).unwrap();
    let ex = out.x.rel_err(&host.x);
    let es = rel(&out.sigma.concat(), &host.sigma.concat());
    println!(
        "ddim20 device step on the kernel emulator (f32) vs f64 host step: x rel err {ex:.2e}, \
         σ rel err {es:.2e} ({})",
        dev.capture_status().err().unwrap_or_default()
    );
    // f32 rounding through 15 guided steps.
    assert!(ex < 1e-5 && es < 1e-5, "{ex} {es}");
}

/// A CPU backend that records graphs the way CUDA stream capture does: while recording, ops
/// are stored with raw arena addresses and NOT executed; `replay(id)` runs graph `id` again
/// on whatever the arena holds then. It lets the sampler's record-after-first-run / replay
/// logic, and several executors sharing one backend, be checked without a GPU.
mod replaying {
    use dynface::backend::cpu::{run_op, CpuBackend};
    use dynface::backend::{BResult, Backend, Operand};
    use dynface::graph::Node;
    use dynface::tensor::numel;
    use std::cell::RefCell;

    struct Step {
        node: Node,
        base: *mut f64,
        ins: Vec<(usize, Vec<usize>)>,
        out: (usize, Vec<usize>),
    }

    #[derive(Default)]
    pub struct ReplayingCpu {
        inner: CpuBackend<f64>,
        recording: RefCell<Option<Vec<Step>>>,
        graphs: RefCell<Vec<Option<Vec<Step>>>>,
        pub replays: RefCell<usize>,
    }

    impl Backend for ReplayingCpu {
        type Elem = f64;
        type Arena = Vec<f64>;
        fn name(&self) -> String {
            "cpu-f64-replaying".into()
        }
        fn alloc(&self, len: usize) -> BResult<Vec<f64>> {
            self.inner.alloc(len)
        }
        fn write(&self, a: &mut Vec<f64>, offset: usize, data: &[f64]) -> BResult<()> {
            self.inner.write(a, offset, data)
        }
        fn read(&self, a: &Vec<f64>, offset: usize, len: usize) -> BResult<Vec<f64>> {
            self.inner.read(a, offset, len)
        }
        fn fill(&self, a: &mut Vec<f64>, offset: usize, len: usize, v: f32) -> BResult<()> {
            self.inner.fill(a, offset, len, v)
        }
        fn copy(&self, a: &mut Vec<f64>, src: usize, dst: usize, len: usize) -> BResult<()> {
            self.inner.copy(a, src, dst, len)
        }
        fn exec(
            &self,
            a: &mut Vec<f64>,
            node: &Node,
            inputs: &[Operand],
            out: Operand,
            scratch: dynface::backend::Scratch,
        ) -> BResult<()> {
            if let Some(rec) = self.recording.borrow_mut().as_mut() {
                rec.push(Step {
                    node: node.clone(),
                    base: a.as_mut_ptr(),
                    ins: inputs
                        .iter()
                        .map(|o| (o.offset, o.shape.to_vec()))
                        .collect(),
                    out: (out.offset, out.shape.to_vec()),
                });
                return Ok(());
            }
            self.inner.exec(a, node, inputs, out, scratch)
        }
        fn can_capture(&self) -> bool {
            true
        }
        fn supports(&self, op: &dynface::graph::Op, inputs: &[&[usize]]) -> bool {
            self.inner.supports(op, inputs)
        }
        fn begin_capture(&self) -> BResult<()> {
            *self.recording.borrow_mut() = Some(vec![]);
            Ok(())
        }
        fn end_capture(&self) -> BResult<usize> {
            let rec = self.recording.borrow_mut().take().unwrap_or_default();
            let mut g = self.graphs.borrow_mut();
            g.push(Some(rec));
            Ok(g.len() - 1)
        }
        fn replay(&self, graph: usize) -> BResult<()> {
            *self.replays.borrow_mut() += 1;
            let g = self.graphs.borrow();
            let steps = g[graph].as_ref().expect("replay of a released graph");
            for st in steps {
                // SAFETY: the executor that recorded these steps owns the arena and is alive
                // (it released the graph otherwise); the planner keeps outputs disjoint from
                // inputs, as for the CPU backend's own exec.
                let ins: Vec<&[f64]> = st
                    .ins
                    .iter()
                    .map(|(o, s)| unsafe { std::slice::from_raw_parts(st.base.add(*o), numel(s)) })
                    .collect();
                let y = unsafe {
                    std::slice::from_raw_parts_mut(st.base.add(st.out.0), numel(&st.out.1))
                };
                let shapes: Vec<&[usize]> = st.ins.iter().map(|(_, s)| s.as_slice()).collect();
                run_op(&st.node.op, &ins, &shapes, y, &st.out.1)?;
            }
            Ok(())
        }
        fn release_capture(&self, graph: usize) {
            self.graphs.borrow_mut()[graph] = None;
        }
    }
}

/// The device step recorded after its first run and replayed afterwards gives the same
/// sample as uncaptured runs, also with two samplers (two batch sizes) recording their own
/// graphs on one shared backend and running in turn.
#[test]
fn recorded_and_replayed_device_step_equals_uncaptured_runs() {
    use replaying::ReplayingCpu;
    use std::rc::Rc;
    let w = weights(61);
    let gd3 = guidance(62, 3);
    let gd2 = guidance(63, 2);
    let cfg = config("ddim20", UpdateOn::Device);
    let plain3 = sampler(cfg.clone(), 3, &w, true)
        .sample(&gd3, &mut UnitScale, 8)
        .unwrap();
    let plain2 = sampler(cfg.clone(), 2, &w, true)
        .sample(&gd2, &mut UnitScale, 9)
        .unwrap();
    let be = Rc::new(ReplayingCpu::default());
    let mut s3 = sampler_on(be.clone(), cfg.clone(), 3, &w, true);
    let mut s2 = sampler_on(be.clone(), cfg, 2, &w, true);
    for round in 0..2 {
        let a = s3.sample(&gd3, &mut UnitScale, 8).unwrap();
        let b = s2.sample(&gd2, &mut UnitScale, 9).unwrap();
        assert_eq!(s3.capture_status(), Ok(()));
        assert_eq!(s2.capture_status(), Ok(()));
        let (ea, eb) = (a.x.rel_err(&plain3.x), b.x.rel_err(&plain2.x));
        println!("round {round}: replayed vs uncaptured: batch 3 {ea:.1e}, batch 2 {eb:.1e}");
        assert!(ea <= TOL && eb <= TOL);
        assert_eq!(a.sigma, plain3.sigma);
    }
    // Every step after the first of each sampler's first run was a replay.
    let steps = plain3.trace.len() + plain2.trace.len();
    assert_eq!(*be.replays.borrow(), 2 * steps - 2);
    drop(s3);
    // The surviving sampler's graph is untouched by the other's release.
    let b = s2.sample(&gd2, &mut UnitScale, 9).unwrap();
    assert!(b.x.rel_err(&plain2.x) <= TOL);
}
