//! The executor: plans a graph once, binds weights once, then runs it as often as needed
//! with new inputs (one built graph serves every sampling step).

use crate::backend::{Backend, BackendError, Operand, Scratch};
use crate::graph::plan::{plan_with_scratch, Plan, PlanOptions};
use crate::graph::{rewrite, Graph, NodeId, Op};
use crate::tensor::{Scalar, Tensor};
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("backend {backend}: node {node} ({label}, op {op}): {source}")]
    Op {
        backend: String,
        node: usize,
        label: String,
        op: &'static str,
        source: BackendError,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Binding(String),
}

pub type Result<T> = std::result::Result<T, ExecError>;

/// Wall time of each executed node of one profiled run.
#[derive(Clone, Debug)]
pub struct NodeTiming {
    pub node: usize,
    pub op: &'static str,
    pub label: String,
    pub seconds: f64,
    /// CPU-seconds of the process over the node, when the profile was given a CPU clock.
    pub cpu_seconds: Option<f64>,
}

pub struct Executor<B: Backend> {
    pub backend: B,
    graph: Graph,
    plan: Plan,
    arena: B::Arena,
    outputs: Vec<NodeId>,
    bound: Vec<bool>,
    const_ids: HashMap<String, Vec<NodeId>>,
    /// Handle of this executor's recorded graph on the backend.
    captured: Option<usize>,
}

impl<B: Backend> Executor<B> {
    pub fn new(backend: B, graph: &Graph, outputs: &[NodeId], opts: PlanOptions) -> Result<Self> {
        let mut graph = graph.clone();
        if opts.fuse {
            rewrite::fuse(&mut graph, outputs, &|op, shapes| {
                backend.supports(op, shapes)
            });
        }
        let plan = plan_with_scratch(&graph, outputs, opts, &|node, shapes| {
            backend.scratch_len(node, shapes)
        });
        let mut arena = backend.alloc(plan.arena_len)?;
        let mut bound = vec![false; graph.len()];
        let mut const_ids: HashMap<String, Vec<NodeId>> = HashMap::new();
        for &id in &plan.order {
            let node = graph.node(id);
            match &node.op {
                Op::Fill { value } => {
                    let r = plan.region(id);
                    backend.fill(&mut arena, r.offset, r.len, *value)?;
                    bound[id.0] = true;
                }
                Op::Const { name } => const_ids.entry(name.clone()).or_default().push(id),
                _ => {}
            }
        }
        Ok(Executor {
            backend,
            graph,
            plan,
            arena,
            outputs: outputs.to_vec(),
            bound,
            const_ids,
            captured: None,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Peak bytes of the arena (values and weights) at this backend's element size.
    pub fn peak_bytes(&self) -> usize {
        self.plan.arena_len * std::mem::size_of::<B::Elem>()
    }

    /// Names and shapes of the constants this plan needs.
    pub fn required_constants(&self) -> Vec<(String, Vec<usize>)> {
        let mut v: Vec<(String, Vec<usize>)> = self
            .const_ids
            .iter()
            .map(|(k, ids)| (k.clone(), self.graph.shape(ids[0]).to_vec()))
            .collect();
        v.sort();
        v
    }

    pub fn bind_const(&mut self, name: &str, t: &Tensor<f32>) -> Result<()> {
        let ids = self
            .const_ids
            .get(name)
            .ok_or_else(|| ExecError::Binding(format!("graph has no constant named {name}")))?
            .clone();
        let data: Vec<B::Elem> = t.data.iter().map(|&v| B::Elem::of_f32(v)).collect();
        for id in ids {
            let shape = self.graph.shape(id);
            if shape != t.shape.as_slice() {
                return Err(ExecError::Binding(format!(
                    "constant {name}: graph expects shape {shape:?}, weight has {:?}",
                    t.shape
                )));
            }
            let r = self.plan.region(id);
            self.backend.write(&mut self.arena, r.offset, &data)?;
            self.bound[id.0] = true;
        }
        Ok(())
    }

    /// Binds every constant from `lookup`; one error lists all that are missing.
    pub fn bind_all(&mut self, lookup: impl Fn(&str) -> Option<Tensor<f32>>) -> Result<()> {
        let mut missing = vec![];
        for (name, _) in self.required_constants() {
            match lookup(&name) {
                Some(t) => self.bind_const(&name, &t)?,
                None => missing.push(name),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ExecError::Binding(format!(
                "no value for constants: {}",
                missing.join(", ")
            )))
        }
    }

    pub fn set_input(&mut self, name: &str, t: &Tensor<B::Elem>) -> Result<()> {
        let id = self
            .graph
            .find_input(name)
            .ok_or_else(|| ExecError::Binding(format!("graph has no input named {name}")))?;
        let shape = self.graph.shape(id);
        if shape != t.shape.as_slice() {
            return Err(ExecError::Binding(format!(
                "input {name}: graph expects shape {shape:?}, got {:?}",
                t.shape
            )));
        }
        let Some(r) = self.plan.regions[id.0] else {
            // An input no output depends on.
            return Ok(());
        };
        self.backend.write(&mut self.arena, r.offset, &t.data)?;
        self.bound[id.0] = true;
        Ok(())
    }

    fn check_bound(&self) -> Result<()> {
        let unbound: Vec<String> = self
            .plan
            .order
            .iter()
            .filter(|id| !self.bound[id.0])
            .filter_map(|id| match &self.graph.node(*id).op {
                Op::Input { name } => Some(format!("input {name}")),
                Op::Const { name } => Some(format!("constant {name}")),
                _ => None,
            })
            .collect();
        if unbound.is_empty() {
            Ok(())
        } else {
            Err(ExecError::Binding(format!(
                "not set before run: {}",
                unbound.join(", ")
            )))
        }
    }

    fn exec_node(&mut self, id: NodeId) -> Result<()> {
        let node = self.graph.node(id);
        if matches!(
            node.op,
            Op::Input { .. } | Op::Const { .. } | Op::Fill { .. }
        ) || node.op.is_view()
        {
            return Ok(());
        }
        let ins: Vec<Operand> = node
            .inputs
            .iter()
            .map(|j| Operand {
                offset: self.plan.region(*j).offset,
                shape: self.graph.shape(*j),
            })
            .collect();
        let out = Operand {
            offset: self.plan.region(id).offset,
            shape: &node.shape,
        };
        let scratch = self.plan.scratch[id.0].map_or(Scratch::default(), |r| Scratch {
            offset: r.offset,
            len: r.len,
        });
        self.backend
            .exec(&mut self.arena, node, &ins, out, scratch)
            .map_err(|source| ExecError::Op {
                backend: self.backend.name(),
                node: id.0,
                label: node.label.clone(),
                op: node.op.kind(),
                source,
            })
    }

    pub fn run(&mut self) -> Result<()> {
        self.check_bound()?;
        if crate::trace::active() {
            return self.run_traced();
        }
        for i in 0..self.plan.order.len() {
            self.exec_node(self.plan.order[i])?;
        }
        Ok(())
    }

    /// [`Executor::run`] while a trace is recorded: one slice per node (synchronised after
    /// each, so a device's time is in it) and one for the whole run.
    fn run_traced(&mut self) -> Result<()> {
        let t_run = Instant::now();
        self.backend.synchronize()?;
        for i in 0..self.plan.order.len() {
            let id = self.plan.order[i];
            let t0 = Instant::now();
            self.exec_node(id)?;
            self.backend.synchronize()?;
            crate::trace::node(&self.graph, id, t0, Instant::now());
        }
        let args = serde_json::json!({
            "nodes": self.plan.order.len(),
            "arena_bytes": self.peak_bytes(),
        });
        crate::trace::span("graph run", "run", t_run, Instant::now(), args);
        Ok(())
    }

    /// Runs once, synchronising after each node, and returns each node's wall time.
    pub fn run_profiled(&mut self) -> Result<Vec<NodeTiming>> {
        self.run_profiled_with_clock(&|| None)
    }

    /// [`Executor::run_profiled`], also reading `cpu_clock` (CPU-seconds of the process)
    /// around each node: on a loaded machine a node's CPU time is what it cost, its wall
    /// time includes the waits for a core.
    pub fn run_profiled_with_clock(
        &mut self,
        cpu_clock: &dyn Fn() -> Option<f64>,
    ) -> Result<Vec<NodeTiming>> {
        self.check_bound()?;
        let mut times = vec![];
        self.backend.synchronize()?;
        for i in 0..self.plan.order.len() {
            let id = self.plan.order[i];
            let c0 = cpu_clock();
            let t0 = Instant::now();
            self.exec_node(id)?;
            self.backend.synchronize()?;
            let seconds = t0.elapsed().as_secs_f64();
            let cpu_seconds = c0.zip(cpu_clock()).map(|(a, b)| b - a);
            let node = self.graph.node(id);
            times.push(NodeTiming {
                node: id.0,
                op: node.op.kind(),
                label: node.label.clone(),
                seconds,
                cpu_seconds,
            });
        }
        Ok(times)
    }

    /// Records one whole run into a backend graph (CUDA graphs) for [`Executor::replay`].
    /// Runs once uncaptured first, so kernel compilation and workspace sizing stay outside
    /// the capture; inputs set later are seen by replays (the graph reads the arena).
    pub fn capture(&mut self) -> Result<()> {
        self.run()?;
        self.record()
    }

    /// Records one whole run for [`Executor::replay`] WITHOUT executing it (on CUDA a stream
    /// capture only records). The graph must have run uncaptured before, so that kernels are
    /// compiled and workspaces sized; the sampler runs its first step, then records.
    pub fn record(&mut self) -> Result<()> {
        self.check_bound()?;
        self.backend.synchronize()?;
        self.backend.begin_capture()?;
        let mut r = Ok(());
        for i in 0..self.plan.order.len() {
            r = self.exec_node(self.plan.order[i]);
            if r.is_err() {
                break;
            }
        }
        let ended = self.backend.end_capture();
        if let Err(e) = r {
            if let Ok(id) = ended {
                self.backend.release_capture(id);
            }
            return Err(e);
        }
        if let Some(old) = self.captured.take() {
            self.backend.release_capture(old);
        }
        self.captured = Some(ended?);
        Ok(())
    }

    /// Replays the graph recorded by [`Executor::capture`] (asynchronous on devices;
    /// `output` waits for it).
    pub fn replay(&mut self) -> Result<()> {
        self.check_bound()?;
        let graph = self.captured.ok_or_else(|| {
            ExecError::Binding("nothing recorded to replay: call capture or record first".into())
        })?;
        if crate::trace::active() {
            // A replay is opaque to the host; traced runs go node by node (same ops, same
            // arena, so the same results).
            return self.run_traced();
        }
        self.backend.replay(graph)?;
        Ok(())
    }

    pub fn output(&self, id: NodeId) -> Result<Tensor<B::Elem>> {
        if !self.outputs.contains(&id) {
            return Err(ExecError::Binding(format!(
                "node {id} is not an output of this plan (its memory may be reused)"
            )));
        }
        let r = self.plan.region(id);
        let data = self.backend.read(&self.arena, r.offset, r.len)?;
        Ok(Tensor::new(self.graph.shape(id).to_vec(), data))
    }

    /// Copies output `out` into the region of input `input` on the backend (no host round
    /// trip), so a value computed by one run is the next run's input: the sampler's x_t and
    /// σ_i live on the device for a whole run this way. Shapes must match.
    pub fn copy_output_to_input(&mut self, out: NodeId, input: &str) -> Result<()> {
        if !self.outputs.contains(&out) {
            return Err(ExecError::Binding(format!(
                "node {out} is not an output of this plan (its memory may be reused)"
            )));
        }
        let id = self
            .graph
            .find_input(input)
            .ok_or_else(|| ExecError::Binding(format!("graph has no input named {input}")))?;
        let (from, to) = (self.graph.shape(out), self.graph.shape(id));
        if from != to {
            return Err(ExecError::Binding(format!(
                "output {out} has shape {from:?}, input {input} {to:?}"
            )));
        }
        let Some(dst) = self.plan.regions[id.0] else {
            return Ok(());
        };
        let src = self.plan.region(out);
        self.backend
            .copy(&mut self.arena, src.offset, dst.offset, src.len)?;
        self.bound[id.0] = true;
        Ok(())
    }

    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// Arena access for backends that need to run extra work on this executor's memory.
    pub fn arena_mut(&mut self) -> (&B, &mut B::Arena) {
        (&self.backend, &mut self.arena)
    }

    /// Fills the whole arena with `value` (NaN in the checks: an element a kernel never
    /// writes then shows in its output), then rewrites the `Fill` leaves, which are written
    /// only here at construction. Constants and inputs are lost: bind them afterwards.
    pub fn poison(&mut self, value: f32) -> Result<()> {
        self.backend
            .fill(&mut self.arena, 0, self.plan.arena_len, value)?;
        for &id in &self.plan.order {
            if let Op::Fill { value } = &self.graph.node(id).op {
                let r = self.plan.region(id);
                self.backend
                    .fill(&mut self.arena, r.offset, r.len, *value)?;
            } else {
                self.bound[id.0] = false;
            }
        }
        Ok(())
    }
}

impl<B: Backend> Drop for Executor<B> {
    fn drop(&mut self) {
        if let Some(g) = self.captured.take() {
            self.backend.release_capture(g);
        }
    }
}

/// Evaluates `outputs` of `graph` once on `backend`: for tests and one-off computations.
pub fn eval<B: Backend>(
    backend: B,
    graph: &Graph,
    outputs: &[NodeId],
    inputs: &[(&str, &Tensor<B::Elem>)],
    consts: &HashMap<String, Tensor<f32>>,
) -> Result<Vec<Tensor<B::Elem>>> {
    let mut ex = Executor::new(backend, graph, outputs, PlanOptions::default())?;
    ex.bind_all(|n| consts.get(n).cloned())?;
    for (name, t) in inputs {
        ex.set_input(name, t)?;
    }
    ex.run()?;
    outputs.iter().map(|&o| ex.output(o)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::tensor::random;

    /// x ← 2x + 1 five times with the state fed back on the backend, never set from the host
    /// after the first step.
    #[test]
    fn output_fed_back_as_input_iterates_on_the_backend() {
        let mut g = Graph::new();
        let x = g.input("x", &[3, 4]);
        let y = g.affine(x, 2.0, 1.0).unwrap();
        let mut ex =
            Executor::new(CpuBackend::<f64>::new(), &g, &[y], PlanOptions::default()).unwrap();
        let x0: Tensor<f64> = random::normal(&mut random::rng(3), &[3, 4], 1.0);
        ex.set_input("x", &x0).unwrap();
        for _ in 0..5 {
            ex.run().unwrap();
            ex.copy_output_to_input(y, "x").unwrap();
        }
        let got = ex.output(y).unwrap();
        for (g, &v) in got.data.iter().zip(&x0.data) {
            let mut want = v;
            for _ in 0..5 {
                want = 2.0 * want + 1.0;
            }
            assert_eq!(*g, want);
        }
        assert!(ex.copy_output_to_input(y, "nope").is_err());
        assert!(
            ex.copy_output_to_input(x, "x").is_err(),
            "x is not an output"
        );
        let mut g2 = Graph::new();
        let a = g2.input("a", &[2, 3]);
        let s = g2.sum_all(a).unwrap();
        let mut ex2 =
            Executor::new(CpuBackend::<f64>::new(), &g2, &[s], PlanOptions::default()).unwrap();
        let err = ex2.copy_output_to_input(s, "a").unwrap_err().to_string();
        assert!(err.contains("shape"), "{err}");
    }
}
