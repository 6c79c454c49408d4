//! Reverse mode. `grad` appends to the graph the nodes that compute the vector-Jacobian
//! product of chosen outputs with respect to chosen nodes: the backward pass is itself a
//! graph, planned and executed like any other. Each op's VJP is written with graph ops.
//!
//! Gradients flow to every node on a path from a `wrt` node to an output, so asking for
//! gradients with respect to weights (training) needs no change here: it only needs those
//! weight nodes listed in `wrt`.

use super::{AttnInput, BinaryOp, Graph, GraphError, NodeId, Op, ReduceOp, Result, UnaryOp};

/// Appends the backward pass. `seeds` pairs each output with the node holding its
/// cotangent (same shape; for a scalar loss, `g.fill(1.0, &[])`). Returns one gradient
/// node per `wrt` entry (a zero fill when the output does not depend on it).
pub fn grad(g: &mut Graph, seeds: &[(NodeId, NodeId)], wrt: &[NodeId]) -> Result<Vec<NodeId>> {
    let n_fwd = g.len();
    let ids = seeds
        .iter()
        .flat_map(|&(y, c)| [y, c])
        .chain(wrt.iter().copied());
    if let Some(bad) = ids.into_iter().find(|i| i.0 >= n_fwd) {
        return Err(GraphError::Other(format!(
            "grad: node {bad} is not in the graph ({n_fwd} nodes)"
        )));
    }
    for &(y, ct) in seeds {
        if g.shape(y) != g.shape(ct) {
            return Err(GraphError::Other(format!(
                "cotangent {ct} has shape {:?} but output {y} has {:?}",
                g.shape(ct),
                g.shape(y)
            )));
        }
    }
    // needs[n]: n depends on some wrt node, so its cotangent must be propagated.
    let mut needs = vec![false; n_fwd];
    for &w in wrt {
        needs[w.0] = true;
    }
    for i in 0..n_fwd {
        if !needs[i] && g.nodes[i].inputs.iter().any(|j| needs[j.0]) {
            needs[i] = true;
        }
    }
    let mut ct: Vec<Option<NodeId>> = vec![None; n_fwd];
    for &(y, c) in seeds {
        accumulate(g, &mut ct, y, c)?;
    }
    let top = seeds.iter().map(|s| s.0 .0).max().unwrap_or(0);
    for i in (0..=top.min(n_fwd.saturating_sub(1))).rev() {
        let Some(dy) = ct[i] else { continue };
        if !needs[i] || g.nodes[i].inputs.is_empty() {
            continue;
        }
        let inputs = g.nodes[i].inputs.clone();
        let want: Vec<bool> = inputs.iter().map(|j| needs[j.0]).collect();
        if !want.iter().any(|&w| w) {
            continue;
        }
        let label = g.nodes[i].label.clone();
        let precision = g.nodes[i].precision;
        let grads = g.inherit_precision(precision, |g| {
            g.scope(&format!("grad[{label}]"), |g| vjp(g, NodeId(i), dy, &want))
        })?;
        for (k, gi) in grads.into_iter().enumerate() {
            if want[k] {
                let gi = gi.ok_or_else(|| {
                    GraphError::Other(format!(
                        "node {i} ({label}): op {} has no vector-Jacobian product with respect to input {k}",
                        g.nodes[i].op.kind()
                    ))
                })?;
                accumulate(g, &mut ct, inputs[k], gi)?;
            }
        }
    }
    wrt.iter()
        .map(|&w| match ct[w.0] {
            Some(c) => Ok(c),
            None => {
                let s = g.shape(w).to_vec();
                Ok(g.fill(0.0, &s))
            }
        })
        .collect()
}

fn accumulate(g: &mut Graph, ct: &mut [Option<NodeId>], at: NodeId, add: NodeId) -> Result<()> {
    ct[at.0] = Some(match ct[at.0] {
        None => add,
        Some(prev) => g.add(prev, add)?,
    });
    Ok(())
}

/// Reduces a gradient of a broadcast result back to the operand's shape.
fn unbroadcast(g: &mut Graph, d: NodeId, shape: &[usize]) -> Result<NodeId> {
    if g.shape(d) == shape {
        Ok(d)
    } else {
        g.sum_to(d, shape)
    }
}

/// Gradients for each input of node `n` given its output cotangent `dy`; `None` where
/// not wanted.
fn vjp(g: &mut Graph, n: NodeId, dy: NodeId, want: &[bool]) -> Result<Vec<Option<NodeId>>> {
    let node = g.node(n).clone();
    let x = |k: usize| node.inputs[k];
    let shape_of = |g: &Graph, k: usize| g.shape(node.inputs[k]).to_vec();
    let mut out: Vec<Option<NodeId>> = vec![None; node.inputs.len()];
    match &node.op {
        Op::Input { .. } | Op::Const { .. } | Op::Fill { .. } => {}
        Op::Unary(u) => {
            out[0] = Some(match u {
                UnaryOp::Affine(a, _) => g.scale(dy, *a)?,
                UnaryOp::Neg => g.scale(dy, -1.0)?,
                _ => g.push(Op::UnaryBackward(*u), &[x(0), dy])?,
            })
        }
        Op::Binary(b) => {
            let (a_s, b_s) = (shape_of(g, 0), shape_of(g, 1));
            match b {
                BinaryOp::Add => {
                    if want[0] {
                        out[0] = Some(unbroadcast(g, dy, &a_s)?);
                    }
                    if want[1] {
                        out[1] = Some(unbroadcast(g, dy, &b_s)?);
                    }
                }
                BinaryOp::Sub => {
                    if want[0] {
                        out[0] = Some(unbroadcast(g, dy, &a_s)?);
                    }
                    if want[1] {
                        let neg = g.scale(dy, -1.0)?;
                        out[1] = Some(unbroadcast(g, neg, &b_s)?);
                    }
                }
                BinaryOp::Mul => {
                    if want[0] {
                        let p = g.mul(dy, x(1))?;
                        out[0] = Some(unbroadcast(g, p, &a_s)?);
                    }
                    if want[1] {
                        let p = g.mul(dy, x(0))?;
                        out[1] = Some(unbroadcast(g, p, &b_s)?);
                    }
                }
                BinaryOp::Div => {
                    if want[0] {
                        let p = g.div(dy, x(1))?;
                        out[0] = Some(unbroadcast(g, p, &a_s)?);
                    }
                    if want[1] {
                        // d(a/b)/db = −(a/b)/b
                        let q = g.div(n, x(1))?;
                        let p = g.mul(dy, q)?;
                        let p = g.scale(p, -1.0)?;
                        out[1] = Some(unbroadcast(g, p, &b_s)?);
                    }
                }
            }
        }
        Op::SumTo { .. } => {
            let s = shape_of(g, 0);
            out[0] = Some(g.broadcast_to(dy, &s)?);
        }
        Op::BroadcastTo { .. } => {
            let s = shape_of(g, 0);
            out[0] = Some(g.sum_to(dy, &s)?);
        }
        Op::Reduce { op, axes, keepdim } => {
            let s = shape_of(g, 0);
            let kept: Vec<usize> = s
                .iter()
                .enumerate()
                .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
                .collect();
            let mut d = if *keepdim { dy } else { g.reshape(dy, &kept)? };
            if *op == ReduceOp::Mean {
                // Divide by the count: op parameters are f32, so scaling by 1/count would
                // round it (3·10⁻⁸ relative for a count of 3) even in an f64 graph, while
                // integer counts up to 2²⁴ are exact. Done before broadcasting, on fewer values.
                let count: usize = axes.iter().map(|&a| s[a]).product();
                let n = g.fill(count.max(1) as f32, &[]);
                d = g.div(d, n)?;
            }
            out[0] = Some(g.broadcast_to(d, &s)?);
        }
        Op::Conv2d(p) => {
            let xs = shape_of(g, 0);
            let ws = shape_of(g, 1);
            if want[0] {
                out[0] = Some(g.push(
                    Op::Conv2dBackwardInput {
                        p: *p,
                        in_hw: (xs[2], xs[3]),
                    },
                    &[dy, x(1)],
                )?);
            }
            if want[1] {
                out[1] = Some(g.push(
                    Op::Conv2dBackwardWeight {
                        p: *p,
                        w_shape: [ws[0], ws[1], ws[2], ws[3]],
                    },
                    &[x(0), dy],
                )?);
            }
            if want.get(2) == Some(&true) {
                out[2] = Some(g.sum(dy, &[0, 2, 3], false)?);
            }
        }
        Op::Conv2dBackwardInput { p, .. } => {
            // Linear in dy: its adjoint is the forward convolution.
            if want[0] {
                out[0] = Some(g.conv2d(dy, x(1), None, p.stride, p.pad, p.groups)?);
            }
        }
        Op::MatMul { trans_a, trans_b } => {
            let (a_s, b_s) = (shape_of(g, 0), shape_of(g, 1));
            let (a, b) = (x(0), x(1));
            if want[0] {
                let d = match (trans_a, trans_b) {
                    (false, false) => g.matmul(dy, b, false, true)?,
                    (false, true) => g.matmul(dy, b, false, false)?,
                    (true, false) => g.matmul(b, dy, false, true)?,
                    (true, true) => g.matmul(b, dy, true, true)?,
                };
                out[0] = Some(unbroadcast(g, d, &a_s)?);
            }
            if want[1] {
                let d = match (trans_a, trans_b) {
                    (false, false) => g.matmul(a, dy, true, false)?,
                    (false, true) => g.matmul(dy, a, true, false)?,
                    (true, false) => g.matmul(a, dy, false, false)?,
                    (true, true) => g.matmul(dy, a, true, true)?,
                };
                out[1] = Some(unbroadcast(g, d, &b_s)?);
            }
        }
        Op::GroupNorm { groups, eps } => {
            let xs = shape_of(g, 0);
            if want[0] {
                out[0] = Some(g.push(
                    Op::GroupNormBackward {
                        groups: *groups,
                        eps: *eps,
                    },
                    &[x(0), x(1), dy],
                )?);
            }
            if want[1] {
                out[1] = Some(g.push(
                    Op::GroupNormBackwardGamma {
                        groups: *groups,
                        eps: *eps,
                    },
                    &[x(0), dy],
                )?);
            }
            if want[2] {
                let axes: Vec<usize> = (0..xs.len()).filter(|&a| a != 1).collect();
                out[2] = Some(g.sum(dy, &axes, false)?);
            }
        }
        Op::GroupNormSilu {
            groups,
            eps,
            scale_shift,
        } => {
            let (groups, eps, ss) = (*groups, *eps, *scale_shift);
            if want[0] {
                let mut ins = node.inputs.clone();
                ins.push(dy);
                let op = Op::GroupNormSiluBackward {
                    groups,
                    eps,
                    scale_shift: ss,
                };
                out[0] = Some(g.push(op, &ins)?);
            }
            if want[1..].iter().any(|&w| w) {
                // Parameter gradients (training, or a differentiable timestep path) are
                // composed from the unfused ops and built only when asked for: sampling
                // needs dx alone, which stays one fused kernel.
                let xs = shape_of(g, 0);
                let u = g.group_norm(x(0), x(1), x(2), groups, eps)?;
                let (v, one_plus) = if ss {
                    let mut bc = xs.clone();
                    bc[2..].iter_mut().for_each(|d| *d = 1);
                    let s = g.reshape(x(3), &bc)?;
                    let t = g.reshape(x(4), &bc)?;
                    let one_plus = g.affine(s, 1.0, 1.0)?;
                    let m = g.mul(u, one_plus)?;
                    (g.add(m, t)?, Some(one_plus))
                } else {
                    (u, None)
                };
                let dv = g.push(Op::UnaryBackward(UnaryOp::Silu), &[v, dy])?;
                let du = match one_plus {
                    Some(o) => g.mul(dv, o)?,
                    None => dv,
                };
                if want[1] {
                    out[1] = Some(g.push(Op::GroupNormBackwardGamma { groups, eps }, &[x(0), du])?);
                }
                if want[2] {
                    let axes: Vec<usize> = (0..xs.len()).filter(|&a| a != 1).collect();
                    out[2] = Some(g.sum(du, &axes, false)?);
                }
                let spatial: Vec<usize> = (2..xs.len()).collect();
                let per_bc = |g: &mut Graph, t: NodeId| -> Result<NodeId> {
                    if spatial.is_empty() {
                        Ok(t)
                    } else {
                        g.sum(t, &spatial, false)
                    }
                };
                if ss && want[3] {
                    let p = g.mul(dv, u)?;
                    out[3] = Some(per_bc(g, p)?);
                }
                if ss && want[4] {
                    out[4] = Some(per_bc(g, dv)?);
                }
            }
        }
        Op::LayerNorm { eps } => {
            let xs = shape_of(g, 0);
            if want[0] {
                out[0] = Some(g.push(Op::LayerNormBackward { eps: *eps }, &[x(0), x(1), dy])?);
            }
            if want[1] {
                out[1] = Some(g.push(Op::LayerNormBackwardGamma { eps: *eps }, &[x(0), dy])?);
            }
            if want[2] {
                let axes: Vec<usize> = (0..xs.len() - 1).collect();
                out[2] = Some(g.sum(dy, &axes, false)?);
            }
        }
        Op::Softmax => {
            out[0] = Some(g.push(Op::SoftmaxBackward, &[n, dy])?);
        }
        Op::Attention { scale, layout } => {
            let ins = [x(0), x(1), x(2), n, dy];
            for (k, wrt) in [AttnInput::Q, AttnInput::K, AttnInput::V]
                .into_iter()
                .enumerate()
            {
                if want[k] {
                    let op = Op::AttentionBackward {
                        scale: *scale,
                        layout: *layout,
                        wrt,
                    };
                    out[k] = Some(g.push(op, &ins)?);
                }
            }
        }
        Op::Concat { axis } => {
            let mut start = 0;
            for k in 0..node.inputs.len() {
                let len = g.shape(node.inputs[k])[*axis];
                if want[k] {
                    out[k] = Some(g.slice(dy, *axis, start, len)?);
                }
                start += len;
            }
        }
        Op::Slice { axis, start, .. } => {
            let full = shape_of(g, 0)[*axis];
            out[0] = Some(g.push(
                Op::Pad {
                    axis: *axis,
                    start: *start,
                    full,
                },
                &[dy],
            )?);
        }
        Op::Pad { axis, start, .. } => {
            let len = shape_of(g, 0)[*axis];
            out[0] = Some(g.slice(dy, *axis, *start, len)?);
        }
        Op::Reshape { .. } => {
            let s = shape_of(g, 0);
            out[0] = Some(g.reshape(dy, &s)?);
        }
        Op::Permute { perm } => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            out[0] = Some(g.permute(dy, &inv)?);
        }
        Op::Upsample2x => out[0] = Some(g.push(Op::SumPool2x, &[dy])?),
        Op::SumPool2x => out[0] = Some(g.push(Op::Upsample2x, &[dy])?),
        Op::PixelShuffle { r } => out[0] = Some(g.pixel_unshuffle(dy, *r)?),
        Op::PixelUnshuffle { r } => out[0] = Some(g.pixel_shuffle(dy, *r)?),
        Op::Roll { shifts } => {
            let back: Vec<(usize, isize)> = shifts.iter().map(|&(a, s)| (a, -s)).collect();
            out[0] = Some(g.roll(dy, &back)?);
        }
        Op::GaussianBlur => {
            if want[0] {
                out[0] = Some(g.push(Op::GaussianBlurAdjoint, &[dy, x(1)])?);
            }
            if want[1] {
                out[1] = Some(g.push(Op::GaussianBlurDSigma, &[x(0), x(1), dy])?);
            }
        }
        Op::GaussianBlurAdjoint => {
            if want[0] {
                out[0] = Some(g.gaussian_blur(dy, x(1))?);
            }
        }
        // Second-order and integer-valued ops: asking for these gradients is an error that
        // names the op (reported by the caller).
        Op::UnaryBackward(_)
        | Op::Conv2dBackwardWeight { .. }
        | Op::GroupNormBackward { .. }
        | Op::GroupNormBackwardGamma { .. }
        | Op::GroupNormSiluBackward { .. }
        | Op::LayerNormBackward { .. }
        | Op::LayerNormBackwardGamma { .. }
        | Op::SoftmaxBackward
        | Op::AttentionBackward { .. }
        | Op::TimestepEmbedding { .. }
        | Op::GaussianBlurDSigma => {}
    }
    Ok(out)
}
