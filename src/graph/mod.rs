//! The computation graph: nodes in topological order (a node's inputs always precede it),
//! shapes inferred and checked when a node is added.

pub mod autodiff;
pub mod build;
pub mod op;
pub mod plan;
pub mod precision;
pub mod rewrite;
pub mod shape;

pub use op::{AttnDims, AttnInput, AttnLayout, BinaryOp, Conv2dParams, Op, ReduceOp, UnaryOp};
pub use precision::Precision;

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Vec<usize>,
    /// A readable label (the module path for model graphs) used in errors and profiles.
    pub label: String,
    /// Operand precision of this node's products; `None`: the executor's default.
    pub precision: Option<Precision>,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("node {node} ({label}): op {op}: {msg}; input shapes {shapes:?}")]
    Shape {
        node: usize,
        label: String,
        op: &'static str,
        shapes: Vec<Vec<usize>>,
        msg: String,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, GraphError>;

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Label prefix applied to nodes added from now on (see [`Graph::scope`]).
    prefix: Vec<String>,
    /// Precision given to nodes added from now on (see [`Graph::with_precision`]).
    precision: Option<Precision>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id.0].shape
    }

    /// Runs `f` with `name` appended to the label prefix, so nodes read `down.3.conv`.
    pub fn scope<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.prefix.push(name.to_string());
        let r = f(self);
        self.prefix.pop();
        r
    }

    /// Runs `f` with every node it adds marked `precision` (an inner call overrides an
    /// outer one for its own nodes). Gradients later taken through these nodes get the same
    /// mark (`autodiff::grad`).
    pub fn with_precision<R>(&mut self, precision: Precision, f: impl FnOnce(&mut Self) -> R) -> R {
        self.inherit_precision(Some(precision), f)
    }

    /// Runs `f` with nodes marked `precision` when it is `Some`, else with the current mark:
    /// the backward nodes of a forward node follow the forward node's mark if it has one.
    pub(crate) fn inherit_precision<R>(
        &mut self,
        precision: Option<Precision>,
        f: impl FnOnce(&mut Self) -> R,
    ) -> R {
        let outer = self.precision;
        self.precision = precision.or(outer);
        let r = f(self);
        self.precision = outer;
        r
    }

    fn label(&self, what: &str) -> String {
        if self.prefix.is_empty() {
            what.to_string()
        } else {
            format!("{}.{}", self.prefix.join("."), what)
        }
    }

    /// Adds a node after checking its inputs exist and inferring its shape.
    pub fn push(&mut self, op: Op, inputs: &[NodeId]) -> Result<NodeId> {
        self.push_leafy(op, inputs, None)
    }

    fn push_leafy(
        &mut self,
        op: Op,
        inputs: &[NodeId],
        leaf_shape: Option<&[usize]>,
    ) -> Result<NodeId> {
        let id = self.nodes.len();
        let label = self.label(op.kind());
        if let Some(bad) = inputs.iter().find(|i| i.0 >= id) {
            return Err(GraphError::Other(format!(
                "node {id} ({label}): input {bad} does not exist yet"
            )));
        }
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|i| self.nodes[i.0].shape.as_slice())
            .collect();
        let shape = shape::infer(&op, &shapes, leaf_shape).map_err(|msg| GraphError::Shape {
            node: id,
            label: label.clone(),
            op: op.kind(),
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            msg,
        })?;
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            shape,
            label,
            precision: self.precision,
        });
        Ok(NodeId(id))
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> NodeId {
        let op = Op::Input {
            name: name.to_string(),
        };
        self.push_leafy(op, &[], Some(shape))
            .expect("leaf nodes cannot fail")
    }

    /// A weight; `name` is the checkpoint key it is bound from.
    pub fn constant(&mut self, name: &str, shape: &[usize]) -> NodeId {
        let op = Op::Const {
            name: name.to_string(),
        };
        let id = self
            .push_leafy(op, &[], Some(shape))
            .expect("leaf nodes cannot fail");
        self.nodes[id.0].label = name.to_string();
        id
    }

    pub fn fill(&mut self, value: f32, shape: &[usize]) -> NodeId {
        self.push_leafy(Op::Fill { value }, &[], Some(shape))
            .expect("leaf nodes cannot fail")
    }

    /// Names and shapes of all constants, in node order: the model's weight list.
    pub fn constants(&self) -> Vec<(String, Vec<usize>)> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.op {
                Op::Const { name } => Some((name.clone(), n.shape.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn inputs(&self) -> Vec<(String, NodeId)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.op {
                Op::Input { name } => Some((name.clone(), NodeId(i))),
                _ => None,
            })
            .collect()
    }

    pub fn find_input(&self, name: &str) -> Option<NodeId> {
        self.inputs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id)
    }
}
