//! `dynface info unet` and `dynface debug unet`: library functions plus their clap arguments,
//! so the binary wires each as one subcommand.

use crate::backend::cpu::CpuBackend;
use crate::exec::Executor;
use crate::graph::plan::{plan, PlanOptions};
use crate::graph::{Graph, NodeId};
use crate::models::unet::config::UNetConfig;
use crate::models::unet::cost::{graph_macs, Macs};
use crate::models::unet::model::{parameter_count, unet_spec, UNetGraph};
use crate::models::unet::weights::{check_against_spec, load_safetensors, save_safetensors};
use crate::tensor::Tensor;
use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};

fn load_config(path: Option<&Path>) -> Result<UNetConfig> {
    match path {
        Some(p) => Ok(UNetConfig::from_file(p)?),
        None => Ok(UNetConfig::ffhq512()),
    }
}

/// Arena bytes the plan of `outputs` needs at `elem_bytes` per value, refused above `limit`
/// before anything is allocated.
pub fn check_plan_memory(
    g: &Graph,
    outputs: &[NodeId],
    elem_bytes: usize,
    limit: usize,
) -> Result<usize> {
    let p = plan(g, outputs, PlanOptions::default());
    let bytes = p.arena_len * elem_bytes;
    if bytes > limit {
        bail!(
            "the plan needs {:.2} GB of memory, above the limit of {:.2} GB (raise --max-memory-gb or use a smaller input)",
            bytes as f64 / 1e9,
            limit as f64 / 1e9
        );
    }
    Ok(bytes)
}

#[derive(clap::Args, Debug, Clone)]
pub struct InfoArgs {
    /// UNet config JSON (guided-diffusion argument names); default: DifFace's FFHQ 512 model.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Spatial size for the cost figures; default: the config's image_size.
    #[arg(long)]
    pub size: Option<usize>,
    /// Batch size for the cost figures.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

/// Size and cost of a UNet at one input size.
#[derive(Clone, Debug)]
pub struct UNetInfo {
    pub config: UNetConfig,
    pub batch: usize,
    pub size: usize,
    pub tensors: usize,
    pub parameters: usize,
    pub macs_forward: Macs,
    pub macs_forward_grad: Macs,
    /// Planned f32 arena bytes (weights included) of a forward, and of forward + ∂/∂x.
    pub peak_bytes_forward: usize,
    pub peak_bytes_forward_grad: usize,
}

impl fmt::Display for UNetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |m: u64| m as f64 / 1e9;
        let gb = |b: usize| b as f64 / 1e9;
        writeln!(f, "UNet (guided-diffusion ADM)")?;
        writeln!(f, "  tensors            {}", self.tensors)?;
        writeln!(f, "  parameters         {}", self.parameters)?;
        writeln!(
            f,
            "  input              [{}, {}, {}, {}]",
            self.batch, self.config.in_channels, self.size, self.size
        )?;
        writeln!(
            f,
            "  forward            {:.2} GMAC (conv {:.2}, matmul {:.2})",
            g(self.macs_forward.total()),
            g(self.macs_forward.conv),
            g(self.macs_forward.matmul)
        )?;
        writeln!(
            f,
            "  forward + grad x   {:.2} GMAC",
            g(self.macs_forward_grad.total())
        )?;
        writeln!(
            f,
            "  planned memory     {:.2} GB forward, {:.2} GB forward + grad x (f32)",
            gb(self.peak_bytes_forward),
            gb(self.peak_bytes_forward_grad)
        )
    }
}

/// Parameter and tensor counts, MACs and planned memory, without running anything.
pub fn unet_info(cfg: &UNetConfig, batch: usize, size: usize) -> Result<UNetInfo> {
    let spec = unet_spec(cfg)?;
    let fwd = UNetGraph::new(cfg, batch, size, size, false)?;
    let bwd = UNetGraph::new(cfg, batch, size, size, true)?;
    let peak =
        |ug: &UNetGraph| plan(&ug.graph, &ug.outputs(), PlanOptions::default()).arena_len * 4;
    Ok(UNetInfo {
        config: cfg.clone(),
        batch,
        size,
        tensors: spec.len(),
        parameters: parameter_count(&spec),
        macs_forward: graph_macs(&fwd.graph, &fwd.outputs()),
        macs_forward_grad: graph_macs(&bwd.graph, &bwd.outputs()),
        peak_bytes_forward: peak(&fwd),
        peak_bytes_forward_grad: peak(&bwd),
    })
}

pub fn run_info_unet(args: &InfoArgs) -> Result<UNetInfo> {
    let cfg = load_config(args.config.as_deref())?;
    let size = args.size.unwrap_or(cfg.image_size);
    unet_info(&cfg, args.batch, size)
}

#[derive(clap::Args, Debug, Clone)]
pub struct DebugArgs {
    /// UNet config JSON; default: DifFace's FFHQ 512 model.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Weights (safetensors; a `module.` prefix is stripped).
    #[arg(long)]
    pub weights: PathBuf,
    /// Inputs: `x` [B,C,H,W], `t` [B] (int or float), optional `cotangent` [B,out,H,W].
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors: `out`, and `grad_x` when a cotangent was given.
    #[arg(long)]
    pub out: PathBuf,
    /// Refuse to run when the planned memory exceeds this many GB.
    #[arg(long, default_value_t = 20.0)]
    pub max_memory_gb: f64,
}

/// What one debug run computed.
#[derive(Clone, Debug)]
pub struct DebugReport {
    pub out_shape: Vec<usize>,
    pub with_grad: bool,
    pub peak_bytes: usize,
    pub seconds: f64,
}

/// Runs the UNet (and its input gradient) once on the CPU in f32 and writes the results.
pub fn run_debug_unet(args: &DebugArgs) -> Result<DebugReport> {
    let cfg = load_config(args.config.as_deref())?;
    let weights = load_safetensors(&args.weights)?;
    let spec = unet_spec(&cfg)?;
    check_against_spec(&weights, &spec)
        .with_context(|| format!("weights {}", args.weights.display()))?;
    let io = load_safetensors(&args.input)?;
    let get = |k: &str| {
        io.get(k)
            .ok_or_else(|| anyhow!("{}: no tensor named `{k}`", args.input.display()))
    };
    let x = get("x")?;
    let t = get("t")?;
    let cot = io.get("cotangent");
    if x.shape.len() != 4 {
        bail!(
            "{}: x has shape {:?}, expected [B, C, H, W]",
            args.input.display(),
            x.shape
        );
    }
    let (b, h, w) = (x.shape[0], x.shape[2], x.shape[3]);
    let ug = UNetGraph::new(&cfg, b, h, w, cot.is_some())?;
    let outputs = ug.outputs();
    let limit = (args.max_memory_gb * 1e9) as usize;
    let peak = check_plan_memory(&ug.graph, &outputs, 4, limit)?;
    let start = std::time::Instant::now();
    let mut ex = Executor::new(
        CpuBackend::<f32>::new(),
        &ug.graph,
        &outputs,
        PlanOptions::default(),
    )?;
    ex.bind_all(|n| weights.get(n).cloned())?;
    ex.set_input("x", x)?;
    ex.set_input("t", t)?;
    if let Some(c) = cot {
        ex.set_input("cotangent", c)?;
    }
    ex.run()?;
    let seconds = start.elapsed().as_secs_f64();
    let out = ex.output(ug.out)?;
    let mut saved: Vec<(&str, Tensor<f32>)> = vec![("out", out)];
    if let Some(gx) = ug.grad_x {
        saved.push(("grad_x", ex.output(gx)?));
    }
    let refs: Vec<(&str, &Tensor<f32>)> = saved.iter().map(|(n, t)| (*n, t)).collect();
    save_safetensors(&args.out, &refs)?;
    Ok(DebugReport {
        out_shape: saved[0].1.shape.clone(),
        with_grad: ug.grad_x.is_some(),
        peak_bytes: peak,
        seconds,
    })
}
