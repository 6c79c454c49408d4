// Group norm and layer norm, forward and backward. Statistics are two-pass (mean, then the
// mean of squared deviations) in fp32 per thread, combined across the block in double with
// warp shuffles, so they are not sensitive to large means. Biased variance, as PyTorch.

// Mean and 1/sqrt(var+eps) of v[0..len) by the whole block.
__device__ void block_stats(const float* __restrict__ v, i64 len, float eps, double* sh,
                            float& mean_out, float& inv_out) {
    float s = 0.0f;
    for (i64 k = threadIdx.x; k < len; k += blockDim.x) s += v[k];
    double mean = block_sum_d((double)s, sh) / (double)len;
    float m = (float)mean;
    float q = 0.0f;
    for (i64 k = threadIdx.x; k < len; k += blockDim.x) {
        float d = v[k] - m;
        q += d * d;
    }
    double var = block_sum_d((double)q, sh) / (double)len;
    mean_out = m;
    inv_out = (float)(1.0 / sqrt(var + (double)eps));
}

// One block per (image, group); the group's channels are contiguous: glen = cg·spatial.
extern "C" __global__ void group_norm_fwd(const float* __restrict__ x,
                                          const float* __restrict__ gamma,
                                          const float* __restrict__ beta, float* __restrict__ y,
                                          i64 groups, i64 cg, i64 spatial, float eps) {
    __shared__ double sh[32];
    i64 gi = blockIdx.x;
    i64 glen = cg * spatial;
    const float* xg = x + gi * glen;
    float* yg = y + gi * glen;
    float mean, inv;
    block_stats(xg, glen, eps, sh, mean, inv);
    i64 c0 = (gi % groups) * cg;
    for (i64 k = threadIdx.x; k < glen; k += blockDim.x) {
        i64 c = c0 + k / spatial;
        yg[k] = (xg[k] - mean) * inv * gamma[c] + beta[c];
    }
}

// dx = inv·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dy·γ.
extern "C" __global__ void group_norm_bwd(const float* __restrict__ x,
                                          const float* __restrict__ gamma,
                                          const float* __restrict__ dy, float* __restrict__ dx,
                                          i64 groups, i64 cg, i64 spatial, float eps) {
    __shared__ double sh[32];
    i64 gi = blockIdx.x;
    i64 glen = cg * spatial;
    const float* xg = x + gi * glen;
    const float* dyg = dy + gi * glen;
    float* dxg = dx + gi * glen;
    float mean, inv;
    block_stats(xg, glen, eps, sh, mean, inv);
    i64 c0 = (gi % groups) * cg;
    float s1 = 0.0f, s2 = 0.0f;
    for (i64 k = threadIdx.x; k < glen; k += blockDim.x) {
        float dxh = dyg[k] * gamma[c0 + k / spatial];
        s1 += dxh;
        s2 += dxh * (xg[k] - mean) * inv;
    }
    float m1 = (float)(block_sum_d((double)s1, sh) / (double)glen);
    float m2 = (float)(block_sum_d((double)s2, sh) / (double)glen);
    for (i64 k = threadIdx.x; k < glen; k += blockDim.x) {
        float xh = (xg[k] - mean) * inv;
        dxg[k] = inv * (dyg[k] * gamma[c0 + k / spatial] - m1 - xh * m2);
    }
}

// stats[2·gi] = mean, stats[2·gi+1] = inv of each contiguous row of length len (one block each).
extern "C" __global__ void row_stats_block(const float* __restrict__ x, float* __restrict__ stats,
                                           i64 len, float eps) {
    __shared__ double sh[32];
    float mean, inv;
    block_stats(x + (i64)blockIdx.x * len, len, eps, sh, mean, inv);
    if (threadIdx.x == 0) {
        stats[2 * (i64)blockIdx.x] = mean;
        stats[2 * (i64)blockIdx.x + 1] = inv;
    }
}

// dgamma[c] = Σ_n Σ_s dy·x̂ for channel c; one block per channel, images summed in order so
// the result does not depend on scheduling.
extern "C" __global__ void group_norm_bwd_gamma(const float* __restrict__ x,
                                                const float* __restrict__ dy,
                                                const float* __restrict__ stats,
                                                float* __restrict__ dgamma, i64 n, i64 c,
                                                i64 groups, i64 spatial) {
    __shared__ double sh[32];
    i64 ch = blockIdx.x;
    i64 cg = c / groups;
    double total = 0.0;
    for (i64 b = 0; b < n; ++b) {
        i64 gi = b * groups + ch / cg;
        float mean = stats[2 * gi], inv = stats[2 * gi + 1];
        const float* xp = x + (b * c + ch) * spatial;
        const float* dp = dy + (b * c + ch) * spatial;
        float s = 0.0f;
        for (i64 k = threadIdx.x; k < spatial; k += blockDim.x) s += dp[k] * (xp[k] - mean) * inv;
        total += block_sum_d((double)s, sh);
    }
    if (threadIdx.x == 0) dgamma[ch] = (float)total;
}

// Layer norm over the last axis (length d): one warp per row.
__device__ __forceinline__ void warp_stats(const float* __restrict__ v, i64 d, float eps,
                                           float& mean_out, float& inv_out) {
    int lane = threadIdx.x & 31;
    float s = 0.0f;
    for (i64 k = lane; k < d; k += 32) s += v[k];
    float mean = (float)(warp_sum_d((double)s) / (double)d);
    float q = 0.0f;
    for (i64 k = lane; k < d; k += 32) {
        float t = v[k] - mean;
        q += t * t;
    }
    double var = warp_sum_d((double)q) / (double)d;
    mean_out = mean;
    inv_out = (float)(1.0 / sqrt(var + (double)eps));
}

extern "C" __global__ void layer_norm_fwd(const float* __restrict__ x,
                                          const float* __restrict__ gamma,
                                          const float* __restrict__ beta, float* __restrict__ y,
                                          i64 rows, i64 d, float eps) {
    i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    int lane = threadIdx.x & 31;
    const float* xr = x + row * d;
    float* yr = y + row * d;
    float mean, inv;
    warp_stats(xr, d, eps, mean, inv);
    for (i64 k = lane; k < d; k += 32) yr[k] = (xr[k] - mean) * inv * gamma[k] + beta[k];
}

extern "C" __global__ void layer_norm_bwd(const float* __restrict__ x,
                                          const float* __restrict__ gamma,
                                          const float* __restrict__ dy, float* __restrict__ dx,
                                          i64 rows, i64 d, float eps) {
    i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    int lane = threadIdx.x & 31;
    const float* xr = x + row * d;
    const float* dr = dy + row * d;
    float* o = dx + row * d;
    float mean, inv;
    warp_stats(xr, d, eps, mean, inv);
    float s1 = 0.0f, s2 = 0.0f;
    for (i64 k = lane; k < d; k += 32) {
        float dxh = dr[k] * gamma[k];
        s1 += dxh;
        s2 += dxh * (xr[k] - mean) * inv;
    }
    float m1 = (float)(warp_sum_d((double)s1) / (double)d);
    float m2 = (float)(warp_sum_d((double)s2) / (double)d);
    for (i64 k = lane; k < d; k += 32) {
        float xh = (xr[k] - mean) * inv;
        o[k] = inv * (dr[k] * gamma[k] - m1 - xh * m2);
    }
}

extern "C" __global__ void row_stats_warp(const float* __restrict__ x, float* __restrict__ stats,
                                          i64 rows, i64 d, float eps) {
    i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    float mean, inv;
    warp_stats(x + row * d, d, eps, mean, inv);
    if ((threadIdx.x & 31) == 0) {
        stats[2 * row] = mean;
        stats[2 * row + 1] = inv;
    }
}

// dgamma[k] = Σ_rows dy·x̂: one thread per column, rows in order (coalesced across threads).
extern "C" __global__ void layer_norm_bwd_gamma(const float* __restrict__ x,
                                                const float* __restrict__ dy,
                                                const float* __restrict__ stats,
                                                float* __restrict__ dgamma, i64 rows, i64 d) {
    GRID_STRIDE(k, d) {
        double acc = 0.0;
        for (i64 r = 0; r < rows; ++r)
            acc += (double)(dy[r * d + k] * (x[r * d + k] - stats[2 * r]) * stats[2 * r + 1]);
        dgamma[k] = (float)acc;
    }
}

// ---- Fused group norm → optional FiLM scale-shift → SiLU (the ADM res block's norm and
// activation), forward and input gradient. The backward recomputes x̂ from x, so the forward
// stores only its output.

// Mean and 1/sqrt(var+eps) of v[0..len) in ONE read: sums of d = v − k and d² about k = v[0],
// a value of the row, so for a large common offset the sums do not cancel (var = E[d²] − E[d]²
// loses only as much as |mean − k| exceeds the spread). fp32 per thread, double across the block.
__device__ void block_stats_1pass(const float* __restrict__ v, i64 len, float eps, double* sh,
                                  float& mean_out, float& inv_out) {
    float k0 = v[0];
    float s = 0.0f, q = 0.0f;
    for (i64 k = threadIdx.x; k < len; k += blockDim.x) {
        float d = v[k] - k0;
        s += d;
        q += d * d;
    }
    double m = block_sum_d((double)s, sh) / (double)len;
    double m2 = block_sum_d((double)q, sh) / (double)len;
    double var = fmax(m2 - m * m, 0.0);
    mean_out = (float)((double)k0 + m);
    inv_out = (float)(1.0 / sqrt(var + (double)eps));
}

__device__ __forceinline__ float gns_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// Channel ci of the group: γ, β, 1 + scale, shift (scale-shift of image b only if has_ss).
struct GnsChan {
    float ga, be, sc1, sh;
};

__device__ __forceinline__ GnsChan gns_chan(const float* __restrict__ gamma,
                                            const float* __restrict__ beta,
                                            const float* __restrict__ scale,
                                            const float* __restrict__ shift, i64 c, i64 bc,
                                            int has_ss) {
    GnsChan r;
    r.ga = gamma[c];
    r.be = beta[c];
    r.sc1 = has_ss ? 1.0f + scale[bc] : 1.0f;
    r.sh = has_ss ? shift[bc] : 0.0f;
    return r;
}

// One block per (image, group), whose glen = cg·spatial values are contiguous; glen < 2³²
// (checked by the launch code) so the channel index is a 32-bit division.
extern "C" __global__ void group_norm_silu_fwd(const float* __restrict__ x,
                                               const float* __restrict__ gamma,
                                               const float* __restrict__ beta,
                                               const float* __restrict__ scale,
                                               const float* __restrict__ shift,
                                               float* __restrict__ y, i64 groups, i64 cg,
                                               i64 spatial, int has_ss, float eps) {
    __shared__ double sh[32];
    i64 gi = blockIdx.x;
    unsigned glen = (unsigned)(cg * spatial), sp = (unsigned)spatial;
    const float* xg = x + gi * (i64)glen;
    float* yg = y + gi * (i64)glen;
    float mean, inv;
    block_stats_1pass(xg, glen, eps, sh, mean, inv);
    i64 c0 = (gi % groups) * cg;
    i64 bc0 = (gi / groups) * groups * cg + c0;
    for (unsigned k = threadIdx.x; k < glen; k += blockDim.x) {
        unsigned ci = k / sp;
        GnsChan p = gns_chan(gamma, beta, scale, shift, c0 + ci, bc0 + ci, has_ss);
        float v = ((xg[k] - mean) * inv * p.ga + p.be) * p.sc1 + p.sh;
        yg[k] = v * gns_sigmoid(v);
    }
}

// (x̂, dx̂) at one element: v = (x̂γ + β)(1 + scale) + shift, dx̂ = dy·silu'(v)·γ·(1 + scale).
__device__ __forceinline__ void gns_grad(float xv, float dyv, float mean, float inv, GnsChan p,
                                         float& xh, float& dxh) {
    xh = (xv - mean) * inv;
    float v = (xh * p.ga + p.be) * p.sc1 + p.sh;
    float s = gns_sigmoid(v);
    dxh = dyv * (s * (1.0f + v * (1.0f - s))) * p.ga * p.sc1;
}

// dx = inv·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) over the group; x is read three times (statistics,
// the two means, the output) and dy twice, nothing else.
extern "C" __global__ void group_norm_silu_bwd(const float* __restrict__ x,
                                               const float* __restrict__ gamma,
                                               const float* __restrict__ beta,
                                               const float* __restrict__ scale,
                                               const float* __restrict__ shift,
                                               const float* __restrict__ dy,
                                               float* __restrict__ dx, i64 groups, i64 cg,
                                               i64 spatial, int has_ss, float eps) {
    __shared__ double sh[32];
    i64 gi = blockIdx.x;
    unsigned glen = (unsigned)(cg * spatial), sp = (unsigned)spatial;
    const float* xg = x + gi * (i64)glen;
    const float* dyg = dy + gi * (i64)glen;
    float* dxg = dx + gi * (i64)glen;
    float mean, inv;
    block_stats_1pass(xg, glen, eps, sh, mean, inv);
    i64 c0 = (gi % groups) * cg;
    i64 bc0 = (gi / groups) * groups * cg + c0;
    float s1 = 0.0f, s2 = 0.0f;
    for (unsigned k = threadIdx.x; k < glen; k += blockDim.x) {
        unsigned ci = k / sp;
        GnsChan p = gns_chan(gamma, beta, scale, shift, c0 + ci, bc0 + ci, has_ss);
        float xh, dxh;
        gns_grad(xg[k], dyg[k], mean, inv, p, xh, dxh);
        s1 += dxh;
        s2 += dxh * xh;
    }
    float m1 = (float)(block_sum_d((double)s1, sh) / (double)glen);
    float m2 = (float)(block_sum_d((double)s2, sh) / (double)glen);
    for (unsigned k = threadIdx.x; k < glen; k += blockDim.x) {
        unsigned ci = k / sp;
        GnsChan p = gns_chan(gamma, beta, scale, shift, c0 + ci, bc0 + ci, has_ss);
        float xh, dxh;
        gns_grad(xg[k], dyg[k], mean, inv, p, xh, dxh);
        dxg[k] = inv * (dxh - m1 - xh * m2);
    }
}
