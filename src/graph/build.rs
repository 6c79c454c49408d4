//! Convenience constructors on [`Graph`]: one method per op, plus the composite layers
//! (linear, batch norm, attention, Swin windows, norms) built from them. Composites need no
//! VJP of their own: reverse mode sees only the primitive ops.

use super::{
    AttnLayout, BinaryOp, Conv2dParams, Graph, GraphError, NodeId, Op, ReduceOp, Result, UnaryOp,
};
use crate::tensor::numel;

impl Graph {
    /// The error of a composite whose arguments cannot fit, in the same form as a primitive
    /// op's: it names the node the composite would have started at, the composite and the
    /// shapes of its arguments. Composites index into shapes, so they check first.
    fn composite_err(&self, op: &'static str, args: &[NodeId], msg: String) -> GraphError {
        GraphError::Shape {
            node: self.len(),
            label: self.label(op),
            op,
            shapes: args.iter().map(|&a| self.shape(a).to_vec()).collect(),
            msg,
        }
    }

    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.push(Op::Unary(op), &[x])
    }
    pub fn silu(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Silu, x)
    }
    pub fn gelu(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Gelu, x)
    }
    pub fn elu(&mut self, x: NodeId, alpha: f32) -> Result<NodeId> {
        self.unary(UnaryOp::Elu(alpha), x)
    }
    pub fn leaky_relu(&mut self, x: NodeId, slope: f32) -> Result<NodeId> {
        self.unary(UnaryOp::LeakyRelu(slope), x)
    }
    pub fn clamp(&mut self, x: NodeId, lo: f32, hi: f32) -> Result<NodeId> {
        self.unary(UnaryOp::Clamp(lo, hi), x)
    }
    /// a·x + b
    pub fn affine(&mut self, x: NodeId, a: f32, b: f32) -> Result<NodeId> {
        self.unary(UnaryOp::Affine(a, b), x)
    }
    pub fn scale(&mut self, x: NodeId, a: f32) -> Result<NodeId> {
        self.affine(x, a, 0.0)
    }
    pub fn sqrt(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Sqrt, x)
    }
    pub fn square(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Square, x)
    }

    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.push(Op::Binary(op), &[a, b])
    }
    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Add, a, b)
    }
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Sub, a, b)
    }
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Mul, a, b)
    }
    pub fn div(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Div, a, b)
    }

    pub fn sum_to(&mut self, x: NodeId, shape: &[usize]) -> Result<NodeId> {
        self.push(
            Op::SumTo {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }
    pub fn broadcast_to(&mut self, x: NodeId, shape: &[usize]) -> Result<NodeId> {
        self.push(
            Op::BroadcastTo {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }
    pub fn reduce(
        &mut self,
        op: ReduceOp,
        x: NodeId,
        axes: &[usize],
        keepdim: bool,
    ) -> Result<NodeId> {
        self.push(
            Op::Reduce {
                op,
                axes: axes.to_vec(),
                keepdim,
            },
            &[x],
        )
    }
    pub fn sum(&mut self, x: NodeId, axes: &[usize], keepdim: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Sum, x, axes, keepdim)
    }
    pub fn mean(&mut self, x: NodeId, axes: &[usize], keepdim: bool) -> Result<NodeId> {
        self.reduce(ReduceOp::Mean, x, axes, keepdim)
    }
    /// Sum of every element, as a scalar `[]`.
    pub fn sum_all(&mut self, x: NodeId) -> Result<NodeId> {
        let axes: Vec<usize> = (0..self.shape(x).len()).collect();
        self.sum(x, &axes, false)
    }
    /// ‖x‖₂ over `axes` (plain norm, not squared).
    pub fn l2_norm(&mut self, x: NodeId, axes: &[usize], keepdim: bool) -> Result<NodeId> {
        let sq = self.square(x)?;
        let s = self.sum(sq, axes, keepdim)?;
        self.sqrt(s)
    }

    pub fn conv2d(
        &mut self,
        x: NodeId,
        w: NodeId,
        b: Option<NodeId>,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Result<NodeId> {
        let p = Conv2dParams {
            stride,
            pad,
            groups,
        };
        match b {
            Some(b) => self.push(Op::Conv2d(p), &[x, w, b]),
            None => self.push(Op::Conv2d(p), &[x, w]),
        }
    }

    pub fn matmul(&mut self, a: NodeId, b: NodeId, trans_a: bool, trans_b: bool) -> Result<NodeId> {
        self.push(Op::MatMul { trans_a, trans_b }, &[a, b])
    }

    /// `x · wᵀ + b` over the last axis, with PyTorch's [out, in] weight layout.
    pub fn linear(&mut self, x: NodeId, w: NodeId, b: Option<NodeId>) -> Result<NodeId> {
        let y = self.matmul_2d_last(x, w)?;
        match b {
            Some(b) => self.add(y, b),
            None => Ok(y),
        }
    }

    /// x [..., in] · wᵀ with w [out, in], flattening leading axes into one matrix.
    fn matmul_2d_last(&mut self, x: NodeId, w: NodeId) -> Result<NodeId> {
        let xs = self.shape(x).to_vec();
        let ws = self.shape(w).to_vec();
        if xs.len() == 2 {
            return self.matmul(x, w, false, true);
        }
        let k = *xs.last().unwrap_or(&0);
        let rows = numel(&xs) / k.max(1);
        let x2 = self.reshape(x, &[rows, k])?;
        let y2 = self.matmul(x2, w, false, true)?;
        let mut ys = xs.clone();
        *ys.last_mut().unwrap() = ws[0];
        self.reshape(y2, &ys)
    }

    pub fn group_norm(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        groups: usize,
        eps: f32,
    ) -> Result<NodeId> {
        self.push(Op::GroupNorm { groups, eps }, &[x, gamma, beta])
    }
    /// `silu(group_norm(x)·(1 + scale) + shift)` as one op (`scale_shift` = Some((scale,
    /// shift)), both `[B, C]`), or `silu(group_norm(x))` without: the UNet res block's norm
    /// and activation in one memory pass.
    pub fn group_norm_silu(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        scale_shift: Option<(NodeId, NodeId)>,
        groups: usize,
        eps: f32,
    ) -> Result<NodeId> {
        match scale_shift {
            Some((scale, shift)) => self.push(
                Op::GroupNormSilu {
                    groups,
                    eps,
                    scale_shift: true,
                },
                &[x, gamma, beta, scale, shift],
            ),
            None => self.push(
                Op::GroupNormSilu {
                    groups,
                    eps,
                    scale_shift: false,
                },
                &[x, gamma, beta],
            ),
        }
    }
    pub fn layer_norm(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        eps: f32,
    ) -> Result<NodeId> {
        self.push(Op::LayerNorm { eps }, &[x, gamma, beta])
    }

    /// Inference batch norm of NCHW from running statistics, built from element-wise ops.
    pub fn batch_norm(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        mean: NodeId,
        var: NodeId,
        eps: f32,
    ) -> Result<NodeId> {
        if self.shape(gamma).len() != 1 {
            let msg = "gamma must be a vector [C]".to_string();
            return Err(self.composite_err("batch_norm", &[x, gamma, beta, mean, var], msg));
        }
        let c = self.shape(gamma)[0];
        let inv = {
            let v = self.affine(var, 1.0, eps)?;
            let s = self.sqrt(v)?;
            self.div(gamma, s)?
        };
        let inv = self.reshape(inv, &[1, c, 1, 1])?;
        let mean = self.reshape(mean, &[1, c, 1, 1])?;
        let beta = self.reshape(beta, &[1, c, 1, 1])?;
        let centred = self.sub(x, mean)?;
        let scaled = self.mul(centred, inv)?;
        self.add(scaled, beta)
    }

    /// Training-mode batch norm of NCHW: normalises by the statistics of this batch
    /// (biased variance, as PyTorch does for the forward) and returns them so the caller can
    /// update the running statistics, which the forward never reads. Built from element-wise
    /// ops, so its VJP (through the batch mean and variance) comes from reverse mode.
    pub fn batch_norm_train(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        eps: f32,
    ) -> Result<BatchNormTrain> {
        let xs = self.shape(x).to_vec();
        if xs.len() != 4 || self.shape(gamma) != [xs[1]] || self.shape(beta) != [xs[1]] {
            let msg = "x must be [N, C, H, W] and gamma, beta [C]".to_string();
            return Err(self.composite_err("batch_norm_train", &[x, gamma, beta], msg));
        }
        let c = xs[1];
        let mean = self.mean(x, &[0, 2, 3], true)?;
        let centred = self.sub(x, mean)?;
        let sq = self.square(centred)?;
        let var = self.mean(sq, &[0, 2, 3], true)?;
        let inv = {
            let v = self.affine(var, 1.0, eps)?;
            self.sqrt(v)?
        };
        let gamma4 = self.reshape(gamma, &[1, c, 1, 1])?;
        let beta4 = self.reshape(beta, &[1, c, 1, 1])?;
        let xhat = self.div(centred, inv)?;
        let scaled = self.mul(xhat, gamma4)?;
        let y = self.add(scaled, beta4)?;
        let mean = self.reshape(mean, &[c])?;
        let var = self.reshape(var, &[c])?;
        Ok(BatchNormTrain { y, mean, var })
    }

    /// PReLU with one slope per channel (axis 1): `relu(x) + a·(x − relu(x))`, from
    /// element-wise ops so reverse mode needs nothing new. `a` is `[C]`.
    pub fn prelu(&mut self, x: NodeId, a: NodeId) -> Result<NodeId> {
        let xs = self.shape(x).to_vec();
        let c = self.shape(a).first().copied().unwrap_or(0);
        if self.shape(a).len() != 1 || xs.len() < 2 || xs[1] != c {
            let msg = "slopes must be a vector [C] matching axis 1".to_string();
            return Err(self.composite_err("prelu", &[x, a], msg));
        }
        let mut bshape = vec![1; xs.len()];
        bshape[1] = c;
        let a = self.reshape(a, &bshape)?;
        let pos = self.leaky_relu(x, 0.0)?;
        let neg = self.sub(x, pos)?;
        let scaled = self.mul(neg, a)?;
        self.add(pos, scaled)
    }

    /// max(a, b) = a + relu(b − a), exact up to one rounding of the sum; its VJP sends dy
    /// to the larger operand (to `a` on a tie).
    pub fn maximum(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        let d = self.sub(b, a)?;
        let r = self.leaky_relu(d, 0.0)?;
        self.add(a, r)
    }

    /// Max pooling of NCHW with a `k`×`k` window (k = 2 or 3), stride 2 and PyTorch's
    /// `ceil_mode=True` (a last, partial window is kept when it starts inside the input).
    /// Separable (rows, then columns) and built from slices, reshapes and [`Self::maximum`];
    /// partial windows are completed by repeating the edge sample, which never changes a max.
    pub fn max_pool2d_ceil(&mut self, x: NodeId, k: usize) -> Result<NodeId> {
        if self.shape(x).len() != 4
            || !(k == 2 || k == 3)
            || self.shape(x)[2] < k
            || self.shape(x)[3] < k
        {
            let msg = format!("needs NCHW with H, W >= k and k = 2 or 3 (k = {k})");
            return Err(self.composite_err("max_pool2d_ceil", &[x], msg));
        }
        let h = self.max_pool1d_ceil(x, 2, k)?;
        self.max_pool1d_ceil(h, 3, k)
    }

    /// Output length of a stride-2 ceil-mode pool of `len` samples with window `k`.
    pub fn pool_ceil_len(len: usize, k: usize) -> usize {
        let mut out = (len - k).div_ceil(2) + 1;
        if (out - 1) * 2 >= len {
            out -= 1;
        }
        out
    }

    fn max_pool1d_ceil(&mut self, x: NodeId, axis: usize, k: usize) -> Result<NodeId> {
        let len = self.shape(x)[axis];
        let out = Self::pool_ceil_len(len, k);
        // Even and odd samples of a length 2·(out + k − 2) padded copy: window i is
        // e[i], o[i] (and e[i + 1] for k = 3).
        let pairs = out + k - 2;
        let padded = 2 * pairs;
        let x = if padded > len {
            let last = self.slice(x, axis, len - 1, 1)?;
            let mut parts = vec![x];
            parts.extend(std::iter::repeat_n(last, padded - len));
            self.concat(&parts, axis)?
        } else {
            self.slice(x, axis, 0, padded)?
        };
        let mut s = self.shape(x).to_vec();
        s[axis] = pairs;
        s.insert(axis + 1, 2);
        let x = self.reshape(x, &s)?;
        let mut flat = s.clone();
        flat.remove(axis + 1);
        let e = self.slice(x, axis + 1, 0, 1)?;
        let e = self.reshape(e, &flat)?;
        let o = self.slice(x, axis + 1, 1, 1)?;
        let o = self.reshape(o, &flat)?;
        let e0 = self.slice(e, axis, 0, out)?;
        let o0 = self.slice(o, axis, 0, out)?;
        let m = self.maximum(e0, o0)?;
        if k == 2 {
            return Ok(m);
        }
        let e1 = self.slice(e, axis, 1, out)?;
        self.maximum(m, e1)
    }

    pub fn softmax(&mut self, x: NodeId) -> Result<NodeId> {
        self.push(Op::Softmax, &[x])
    }

    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> Result<NodeId> {
        self.push(Op::Concat { axis }, xs)
    }
    pub fn slice(&mut self, x: NodeId, axis: usize, start: usize, len: usize) -> Result<NodeId> {
        self.push(Op::Slice { axis, start, len }, &[x])
    }
    /// Splits `x` along `axis` into pieces of the given sizes.
    pub fn split(&mut self, x: NodeId, axis: usize, sizes: &[usize]) -> Result<Vec<NodeId>> {
        let mut start = 0;
        let mut out = vec![];
        for &s in sizes {
            out.push(self.slice(x, axis, start, s)?);
            start += s;
        }
        Ok(out)
    }
    pub fn reshape(&mut self, x: NodeId, shape: &[usize]) -> Result<NodeId> {
        if self.shape(x) == shape {
            return Ok(x);
        }
        self.push(
            Op::Reshape {
                shape: shape.to_vec(),
            },
            &[x],
        )
    }
    pub fn permute(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == self.shape(x).len() {
            return Ok(x);
        }
        self.push(
            Op::Permute {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }
    pub fn upsample2x(&mut self, x: NodeId) -> Result<NodeId> {
        self.push(Op::Upsample2x, &[x])
    }
    pub fn avg_pool2x(&mut self, x: NodeId) -> Result<NodeId> {
        let s = self.push(Op::SumPool2x, &[x])?;
        self.scale(s, 0.25)
    }
    /// Mean over H and W of NCHW, keeping `[N, C]`.
    pub fn global_avg_pool(&mut self, x: NodeId) -> Result<NodeId> {
        self.mean(x, &[2, 3], false)
    }
    pub fn pixel_shuffle(&mut self, x: NodeId, r: usize) -> Result<NodeId> {
        self.push(Op::PixelShuffle { r }, &[x])
    }
    pub fn pixel_unshuffle(&mut self, x: NodeId, r: usize) -> Result<NodeId> {
        self.push(Op::PixelUnshuffle { r }, &[x])
    }
    pub fn roll(&mut self, x: NodeId, shifts: &[(usize, isize)]) -> Result<NodeId> {
        self.push(
            Op::Roll {
                shifts: shifts.to_vec(),
            },
            &[x],
        )
    }
    pub fn timestep_embedding(&mut self, t: NodeId, dim: usize) -> Result<NodeId> {
        self.push(
            Op::TimestepEmbedding {
                dim,
                max_period: 10000.0,
            },
            &[t],
        )
    }
    pub fn gaussian_blur(&mut self, x: NodeId, sigma: NodeId) -> Result<NodeId> {
        self.push(Op::GaussianBlur, &[x, sigma])
    }

    /// `x·(1+scale) + shift` with per-(batch, channel) scale and shift `[B, C]`, x NCHW.
    pub fn scale_shift(&mut self, x: NodeId, scale: NodeId, shift: NodeId) -> Result<NodeId> {
        let s = self.shape(scale).to_vec();
        if s.len() != 2 || self.shape(x).len() != 4 {
            let msg = "x must be [B, C, H, W] and scale, shift [B, C]".to_string();
            return Err(self.composite_err("scale_shift", &[x, scale, shift], msg));
        }
        let four = [s[0], s[1], 1, 1];
        let scale = self.reshape(scale, &four)?;
        let shift = self.reshape(shift, &four)?;
        let one_plus = self.affine(scale, 1.0, 1.0)?;
        let y = self.mul(x, one_plus)?;
        self.add(y, shift)
    }

    /// softmax(q·kᵀ·scale)·v over `[.., T, d]` tensors (batch axes broadcast).
    pub fn attention(
        &mut self,
        q: NodeId,
        k: NodeId,
        v: NodeId,
        scale: f32,
        bias: Option<NodeId>,
    ) -> Result<NodeId> {
        let logits = self.matmul(q, k, false, true)?;
        let mut logits = self.scale(logits, scale)?;
        if let Some(b) = bias {
            logits = self.add(logits, b)?;
        }
        let p = self.softmax(logits)?;
        self.matmul(p, v, false, false)
    }

    /// The fused attention op: softmax(scale·q·kᵀ)·v with each operand stored as `layout`
    /// says (the rewrite pass makes it from [`Graph::attention`]-like composites; tests and
    /// the case table build it directly).
    pub fn fused_attention(
        &mut self,
        q: NodeId,
        k: NodeId,
        v: NodeId,
        scale: f32,
        layout: AttnLayout,
    ) -> Result<NodeId> {
        self.push(Op::Attention { scale, layout }, &[q, k, v])
    }

    /// [B, H, W, C] → [B·(H/w)·(W/w), w·w, C] windows (Swin).
    pub fn window_partition(&mut self, x: NodeId, w: usize) -> Result<NodeId> {
        let s = self.shape(x).to_vec();
        if s.len() != 4 || w == 0 || !s[1].is_multiple_of(w) || !s[2].is_multiple_of(w) {
            let msg = format!("window {w} does not divide the [B, H, W, C] map {s:?}");
            return Err(self.composite_err("window_partition", &[x], msg));
        }
        let (b, h, wd, c) = (s[0], s[1], s[2], s[3]);
        let x = self.reshape(x, &[b, h / w, w, wd / w, w, c])?;
        let x = self.permute(x, &[0, 1, 3, 2, 4, 5])?;
        self.reshape(x, &[b * (h / w) * (wd / w), w * w, c])
    }

    /// Inverse of [`Graph::window_partition`] for a map of `h × wd`.
    pub fn window_reverse(&mut self, x: NodeId, w: usize, h: usize, wd: usize) -> Result<NodeId> {
        let s = self.shape(x).to_vec();
        if s.len() != 3
            || w == 0
            || !h.is_multiple_of(w)
            || !wd.is_multiple_of(w)
            || h == 0
            || wd == 0
        {
            let msg = format!("windows {s:?} of size {w} do not tile a {h}×{wd} map");
            return Err(self.composite_err("window_reverse", &[x], msg));
        }
        let c = s[2];
        let b = s[0] / ((h / w) * (wd / w));
        let x = self.reshape(x, &[b, h / w, wd / w, w, w, c])?;
        let x = self.permute(x, &[0, 1, 3, 2, 4, 5])?;
        self.reshape(x, &[b, h, wd, c])
    }
}

/// The nodes of [`Graph::batch_norm_train`]: the output and this batch's per-channel mean
/// and biased variance `[C]`.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormTrain {
    pub y: NodeId,
    pub mean: NodeId,
    pub var: NodeId,
}
