//! Shape inference: every op's output shape from its input shapes, or a message saying
//! which shapes disagree. The graph turns the message into an error naming the node.

use super::op::Op;
use crate::tensor::numel;

/// Numpy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// True when `from` broadcasts to `to`.
pub fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    broadcast(from, to).is_some_and(|s| s == to)
}

fn arity(op: &Op, ins: &[&[usize]], allowed: &[usize]) -> Result<(), String> {
    if allowed.contains(&ins.len()) {
        Ok(())
    } else {
        Err(format!(
            "{} takes {:?} inputs, got {}",
            op.kind(),
            allowed,
            ins.len()
        ))
    }
}

fn rank(name: &str, s: &[usize], r: usize) -> Result<(), String> {
    if s.len() == r {
        Ok(())
    } else {
        Err(format!("{name} must have rank {r}, got shape {s:?}"))
    }
}

pub fn conv_out(size: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    (size + 2 * pad).checked_sub(k).map(|v| v / stride + 1)
}

/// Output shape of `op` applied to inputs of the given shapes. `fill_shape` is the
/// declared shape of leaf ops (inputs, constants, fills).
pub fn infer(
    op: &Op,
    ins: &[&[usize]],
    fill_shape: Option<&[usize]>,
) -> Result<Vec<usize>, String> {
    use Op::*;
    match op {
        Input { .. } | Const { .. } | Fill { .. } => {
            arity(op, ins, &[0])?;
            fill_shape
                .map(|s| s.to_vec())
                .ok_or_else(|| "leaves are added with input, constant or fill".to_string())
        }
        Unary(_) => {
            arity(op, ins, &[1])?;
            Ok(ins[0].to_vec())
        }
        Softmax => {
            arity(op, ins, &[1])?;
            // The backends normalise the last axis; a scalar has none.
            if ins[0].is_empty() {
                return Err("softmax of a scalar".into());
            }
            Ok(ins[0].to_vec())
        }
        UnaryBackward(_) | SoftmaxBackward => {
            arity(op, ins, &[2])?;
            same(ins[0], ins[1])?;
            if matches!(op, SoftmaxBackward) && ins[0].is_empty() {
                return Err("softmax of a scalar".into());
            }
            Ok(ins[0].to_vec())
        }
        Binary(_) => {
            arity(op, ins, &[2])?;
            broadcast(ins[0], ins[1])
                .ok_or_else(|| format!("shapes {:?} and {:?} do not broadcast", ins[0], ins[1]))
        }
        SumTo { shape } => {
            arity(op, ins, &[1])?;
            if broadcasts_to(shape, ins[0]) {
                Ok(shape.clone())
            } else {
                Err(format!("{shape:?} does not broadcast to {:?}", ins[0]))
            }
        }
        BroadcastTo { shape } => {
            arity(op, ins, &[1])?;
            if broadcasts_to(ins[0], shape) {
                Ok(shape.clone())
            } else {
                Err(format!("{:?} does not broadcast to {shape:?}", ins[0]))
            }
        }
        Reduce {
            op: _,
            axes,
            keepdim,
        } => {
            arity(op, ins, &[1])?;
            let s = ins[0];
            if axes.iter().any(|&a| a >= s.len()) {
                return Err(format!("reduce axes {axes:?} out of range for {s:?}"));
            }
            // The VJP of a mean divides by the product of the listed axes' sizes, so a
            // repeated axis would count twice (the forward reduces it once).
            if (1..axes.len()).any(|i| axes[..i].contains(&axes[i])) {
                return Err(format!("reduce axes {axes:?} repeat an axis"));
            }
            let mut out = vec![];
            for (i, &d) in s.iter().enumerate() {
                if axes.contains(&i) {
                    if *keepdim {
                        out.push(1);
                    }
                } else {
                    out.push(d);
                }
            }
            Ok(out)
        }
        Conv2d(p) => {
            arity(op, ins, &[2, 3])?;
            let (x, w) = (ins[0], ins[1]);
            rank("conv2d input", x, 4)?;
            rank("conv2d weight", w, 4)?;
            if p.groups == 0 || x[1] % p.groups != 0 || w[0] % p.groups != 0 {
                return Err(format!(
                    "groups {} must divide input channels {} and output channels {}",
                    p.groups, x[1], w[0]
                ));
            }
            if w[1] * p.groups != x[1] {
                return Err(format!(
                    "weight {w:?} expects {} input channels, input {x:?} has {}",
                    w[1] * p.groups,
                    x[1]
                ));
            }
            if let Some(b) = ins.get(2) {
                if *b != [w[0]] {
                    return Err(format!("bias {b:?} must be [{}]", w[0]));
                }
            }
            if p.stride == 0 {
                return Err("conv2d stride must be ≥ 1".into());
            }
            let oh = conv_out(x[2], w[2], p.stride, p.pad);
            let ow = conv_out(x[3], w[3], p.stride, p.pad);
            match (oh, ow) {
                (Some(oh), Some(ow)) => Ok(vec![x[0], w[0], oh, ow]),
                _ => Err(format!("kernel {w:?} larger than padded input {x:?}")),
            }
        }
        Conv2dBackwardInput { p, in_hw } => {
            arity(op, ins, &[2])?;
            positive_geometry(p)?;
            let (dy, w) = (ins[0], ins[1]);
            rank("dy", dy, 4)?;
            rank("weight", w, 4)?;
            let c = w[1] * p.groups;
            let oh = conv_out(in_hw.0, w[2], p.stride, p.pad);
            let ow = conv_out(in_hw.1, w[3], p.stride, p.pad);
            if dy[1] != w[0] || oh != Some(dy[2]) || ow != Some(dy[3]) {
                return Err(format!(
                    "dy {dy:?} does not match weight {w:?} on input size {in_hw:?}"
                ));
            }
            Ok(vec![dy[0], c, in_hw.0, in_hw.1])
        }
        Conv2dBackwardWeight { p, w_shape } => {
            arity(op, ins, &[2])?;
            positive_geometry(p)?;
            let (x, dy) = (ins[0], ins[1]);
            rank("x", x, 4)?;
            rank("dy", dy, 4)?;
            let oh = conv_out(x[2], w_shape[2], p.stride, p.pad);
            let ow = conv_out(x[3], w_shape[3], p.stride, p.pad);
            if x[0] != dy[0] || dy[1] != w_shape[0] || oh != Some(dy[2]) || ow != Some(dy[3]) {
                return Err(format!(
                    "x {x:?} and dy {dy:?} do not match weight {w_shape:?}"
                ));
            }
            Ok(w_shape.to_vec())
        }
        MatMul { trans_a, trans_b } => {
            arity(op, ins, &[2])?;
            let (a, b) = (ins[0], ins[1]);
            if a.len() < 2 || b.len() < 2 {
                return Err(format!("matmul needs rank ≥ 2, got {a:?} and {b:?}"));
            }
            let (m, ka) = mat_dims(a, *trans_a);
            let (kb, n) = {
                let (r, c) = mat_dims(b, false);
                if *trans_b {
                    (c, r)
                } else {
                    (r, c)
                }
            };
            if ka != kb {
                return Err(format!(
                    "inner dimensions differ: {a:?}{} · {b:?}{}",
                    if *trans_a { "ᵀ" } else { "" },
                    if *trans_b { "ᵀ" } else { "" }
                ));
            }
            let batch = broadcast(&a[..a.len() - 2], &b[..b.len() - 2])
                .ok_or_else(|| format!("batch axes of {a:?} and {b:?} do not broadcast"))?;
            let mut out = batch;
            out.push(m);
            out.push(n);
            Ok(out)
        }
        Attention { layout, .. } => {
            arity(op, ins, &[3])?;
            let dims = layout.dims(ins[0], ins[1], ins[2])?;
            Ok(layout.out_shape(ins[0], &dims))
        }
        AttentionBackward { layout, wrt, .. } => {
            arity(op, ins, &[5])?;
            let dims = layout.dims(ins[0], ins[1], ins[2])?;
            let o = layout.out_shape(ins[0], &dims);
            if ins[3] != o.as_slice() || ins[4] != o.as_slice() {
                return Err(format!(
                    "attention backward: o {:?} and do {:?} must be {o:?}",
                    ins[3], ins[4]
                ));
            }
            Ok(match wrt {
                super::op::AttnInput::Q => ins[0],
                super::op::AttnInput::K => ins[1],
                super::op::AttnInput::V => ins[2],
            }
            .to_vec())
        }
        GroupNorm { groups, .. } => {
            arity(op, ins, &[3])?;
            let x = ins[0];
            if x.len() < 2 || *groups == 0 || !x[1].is_multiple_of(*groups) {
                return Err(format!(
                    "group norm: {groups} groups do not divide channels of {x:?}"
                ));
            }
            channel_param(ins[1], x[1])?;
            channel_param(ins[2], x[1])?;
            Ok(x.to_vec())
        }
        GroupNormBackward { groups, .. } => {
            arity(op, ins, &[3])?;
            let x = ins[0];
            if x.len() < 2 || *groups == 0 || !x[1].is_multiple_of(*groups) {
                return Err(format!(
                    "group norm: {groups} groups do not divide channels of {x:?}"
                ));
            }
            channel_param(ins[1], x[1])?;
            same(x, ins[2])?;
            Ok(x.to_vec())
        }
        GroupNormBackwardGamma { .. } => {
            arity(op, ins, &[2])?;
            same(ins[0], ins[1])?;
            if ins[0].len() < 2 {
                return Err(format!("group norm input {:?} has no channel axis", ins[0]));
            }
            Ok(vec![ins[0][1]])
        }
        GroupNormSilu {
            groups,
            scale_shift,
            ..
        }
        | GroupNormSiluBackward {
            groups,
            scale_shift,
            ..
        } => {
            let params = if *scale_shift { 5 } else { 3 };
            let backward = matches!(op, GroupNormSiluBackward { .. });
            arity(op, ins, &[params + backward as usize])?;
            let x = ins[0];
            if x.len() < 2 || *groups == 0 || !x[1].is_multiple_of(*groups) {
                return Err(format!(
                    "group norm: {groups} groups do not divide channels of {x:?}"
                ));
            }
            channel_param(ins[1], x[1])?;
            channel_param(ins[2], x[1])?;
            if *scale_shift {
                for (name, s) in [("scale", ins[3]), ("shift", ins[4])] {
                    if s != [x[0], x[1]] {
                        return Err(format!(
                            "{name} {s:?} must be [{}, {}] (batch, channels of {x:?})",
                            x[0], x[1]
                        ));
                    }
                }
            }
            if backward {
                same(x, ins[params])?;
            }
            Ok(x.to_vec())
        }
        LayerNorm { .. } => {
            arity(op, ins, &[3])?;
            let d = *ins[0].last().ok_or("layer norm of a scalar")?;
            channel_param(ins[1], d)?;
            channel_param(ins[2], d)?;
            Ok(ins[0].to_vec())
        }
        LayerNormBackward { .. } => {
            arity(op, ins, &[3])?;
            let d = *ins[0].last().ok_or("layer norm of a scalar")?;
            channel_param(ins[1], d)?;
            same(ins[0], ins[2])?;
            Ok(ins[0].to_vec())
        }
        LayerNormBackwardGamma { .. } => {
            arity(op, ins, &[2])?;
            same(ins[0], ins[1])?;
            Ok(vec![*ins[0].last().ok_or("layer norm of a scalar")?])
        }
        Concat { axis } => {
            if ins.is_empty() {
                return Err("concat of nothing".into());
            }
            let first = ins[0];
            if *axis >= first.len() {
                return Err(format!("concat axis {axis} out of range for {first:?}"));
            }
            let mut out = first.to_vec();
            out[*axis] = 0;
            for s in ins {
                if s.len() != first.len()
                    || s.iter()
                        .enumerate()
                        .any(|(i, &d)| i != *axis && d != first[i])
                {
                    return Err(format!("cannot concat {s:?} with {first:?} on axis {axis}"));
                }
                out[*axis] += s[*axis];
            }
            Ok(out)
        }
        Slice { axis, start, len } => {
            arity(op, ins, &[1])?;
            let s = ins[0];
            if *axis >= s.len() || start + len > s[*axis] {
                return Err(format!(
                    "slice {start}..{} on axis {axis} of {s:?}",
                    start + len
                ));
            }
            let mut out = s.to_vec();
            out[*axis] = *len;
            Ok(out)
        }
        Pad { axis, start, full } => {
            arity(op, ins, &[1])?;
            let s = ins[0];
            if *axis >= s.len() || start + s[*axis] > *full {
                return Err(format!("pad of {s:?} to {full} at {start} on axis {axis}"));
            }
            let mut out = s.to_vec();
            out[*axis] = *full;
            Ok(out)
        }
        Reshape { shape } => {
            arity(op, ins, &[1])?;
            if numel(shape) != numel(ins[0]) {
                return Err(format!("cannot reshape {:?} to {shape:?}", ins[0]));
            }
            Ok(shape.clone())
        }
        Permute { perm } => {
            arity(op, ins, &[1])?;
            let s = ins[0];
            let mut seen = vec![false; s.len()];
            if perm.len() != s.len()
                || perm
                    .iter()
                    .any(|&p| p >= s.len() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!(
                    "{perm:?} is not a permutation of the axes of {s:?}"
                ));
            }
            Ok(perm.iter().map(|&p| s[p]).collect())
        }
        Upsample2x => {
            arity(op, ins, &[1])?;
            rank("upsample input", ins[0], 4)?;
            let s = ins[0];
            Ok(vec![s[0], s[1], s[2] * 2, s[3] * 2])
        }
        SumPool2x => {
            arity(op, ins, &[1])?;
            rank("pool input", ins[0], 4)?;
            let s = ins[0];
            if !s[2].is_multiple_of(2) || !s[3].is_multiple_of(2) {
                return Err(format!("2×2 pooling needs even sizes, got {s:?}"));
            }
            Ok(vec![s[0], s[1], s[2] / 2, s[3] / 2])
        }
        PixelShuffle { r } => {
            arity(op, ins, &[1])?;
            rank("pixel shuffle input", ins[0], 4)?;
            let s = ins[0];
            if *r == 0 || !s[1].is_multiple_of(r * r) {
                return Err(format!(
                    "pixel shuffle ×{r}: channels of {s:?} not divisible by {}",
                    r * r
                ));
            }
            Ok(vec![s[0], s[1] / (r * r), s[2] * r, s[3] * r])
        }
        PixelUnshuffle { r } => {
            arity(op, ins, &[1])?;
            rank("pixel unshuffle input", ins[0], 4)?;
            let s = ins[0];
            if *r == 0 || !s[2].is_multiple_of(*r) || !s[3].is_multiple_of(*r) {
                return Err(format!("pixel unshuffle ×{r}: size of {s:?} not divisible"));
            }
            Ok(vec![s[0], s[1] * r * r, s[2] / r, s[3] / r])
        }
        Roll { shifts } => {
            arity(op, ins, &[1])?;
            if shifts.iter().any(|&(a, _)| a >= ins[0].len()) {
                return Err(format!(
                    "roll axes {shifts:?} out of range for {:?}",
                    ins[0]
                ));
            }
            Ok(ins[0].to_vec())
        }
        TimestepEmbedding { dim, .. } => {
            arity(op, ins, &[1])?;
            rank("timesteps", ins[0], 1)?;
            if *dim == 0 || dim % 2 != 0 {
                return Err(format!("timestep embedding dim {dim} must be even"));
            }
            Ok(vec![ins[0][0], *dim])
        }
        GaussianBlur | GaussianBlurAdjoint => {
            arity(op, ins, &[2])?;
            rank("blur input", ins[0], 4)?;
            if ins[1] != [ins[0][0]] {
                return Err(format!("sigma {:?} must be [{}]", ins[1], ins[0][0]));
            }
            Ok(ins[0].to_vec())
        }
        GaussianBlurDSigma => {
            arity(op, ins, &[3])?;
            rank("blur input", ins[0], 4)?;
            if ins[1] != [ins[0][0]] {
                return Err(format!("sigma {:?} must be [{}]", ins[1], ins[0][0]));
            }
            same(ins[0], ins[2])?;
            Ok(vec![ins[0][0]])
        }
    }
}

/// Stride and groups of the backward convolutions, which (unlike `Conv2d`) are built from
/// parameters that no forward check has seen when pushed directly: zero would divide by zero.
fn positive_geometry(p: &super::op::Conv2dParams) -> Result<(), String> {
    if p.stride == 0 || p.groups == 0 {
        Err(format!(
            "stride {} and groups {} must be ≥ 1",
            p.stride, p.groups
        ))
    } else {
        Ok(())
    }
}

fn same(a: &[usize], b: &[usize]) -> Result<(), String> {
    if a == b {
        Ok(())
    } else {
        Err(format!("shapes {a:?} and {b:?} must be equal"))
    }
}

fn channel_param(p: &[usize], c: usize) -> Result<(), String> {
    if p == [c] {
        Ok(())
    } else {
        Err(format!("per-channel parameter {p:?} must be [{c}]"))
    }
}

/// (rows, cols) of the matrix part of `s`, transposed if asked.
pub fn mat_dims(s: &[usize], trans: bool) -> (usize, usize) {
    let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
    if trans {
        (c, r)
    } else {
        (r, c)
    }
}
