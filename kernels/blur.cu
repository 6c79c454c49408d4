// The Gaussian blur family of METHOD.md §3: forward, exact adjoint and ∂/∂σ, one σ per image
// read from device memory (so a captured graph follows σ updates).
//
// g_σ(i) = exp(−i²/2σ²)/Σ_j exp(−j²/2σ²), i ∈ [−R, R], R = max(1, ceil(3σ)); reflect borders
// without repeating the edge (…c b | a b c … x y | x w…), folded repeatedly so images smaller
// than R work. The 2-D blur is rows then columns. Every pass is one launch of blur_pass over
// [B·C planes]; the adjoint of a 1-D pass gathers, for each pixel j, every padded position t
// that reflects onto j (that fold-back is what makes it differ from the blur at borders).
// Taps are computed per block in double from σ and rounded once, as the CPU reference does.

#define BLUR_THREADS 256
#define BLUR_MAXTAPS 1025  // R ≤ 512 (σ ≤ 170) keeps taps in shared memory; beyond, on the fly
// Modes: BlurMode in abi.cuh (shared with Rust).

__device__ __forceinline__ int reflect_idx(int t, int n) {
    if (n == 1) return 0;
    int period = 2 * (n - 1);
    int m = t % period;
    if (m < 0) m += period;
    return m < n ? m : period - m;
}

// Tap k ∈ [0, 2R] of g (or ∂g/∂σ) computed from scratch; used only when R > 512.
__device__ float tap_direct(int k, int R, double sigma, bool deriv) {
    double inv2 = 1.0 / (2.0 * sigma * sigma), s = 0.0, mi2 = 0.0;
    for (int j = -R; j <= R; ++j) s += exp(-(double)j * j * inv2);
    for (int j = -R; j <= R; ++j) mi2 += exp(-(double)j * j * inv2) / s * (double)j * j;
    double i = (double)(k - R);
    double g = exp(-i * i * inv2) / s;
    return deriv ? (float)(g * (i * i - mi2) / (sigma * sigma * sigma)) : (float)g;
}

// in/out: [B, C, H, W]. axis 0 runs along W (rows), axis 1 along H (columns).
extern "C" __global__ void __launch_bounds__(BLUR_THREADS)
    blur_pass(const float* __restrict__ in, float* __restrict__ out,
              const float* __restrict__ sigma, i64 C, i64 H, i64 W, int axis, BlurMode mode,
              int accumulate) {
    __shared__ float taps[BLUR_MAXTAPS];
    __shared__ double sh[32];
    const i64 plane = blockIdx.y;
    const double sg = (double)sigma[plane / C];
    double r3 = ceil(3.0 * sg);
    const int R = (r3 >= 1.0 && r3 < 1e9) ? (int)r3 : 1;
    const int ntap = 2 * R + 1;
    const bool in_smem = ntap <= BLUR_MAXTAPS;
    if (in_smem) {
        const double inv2 = 1.0 / (2.0 * sg * sg);
        double part = 0.0;
        for (int k = threadIdx.x; k < ntap; k += blockDim.x)
            part += exp(-(double)(k - R) * (k - R) * inv2);
        const double s = block_sum_d(part, sh);
        double part2 = 0.0;
        for (int k = threadIdx.x; k < ntap; k += blockDim.x) {
            double i = (double)(k - R);
            part2 += exp(-i * i * inv2) / s * i * i;
        }
        const double mi2 = block_sum_d(part2, sh);
        for (int k = threadIdx.x; k < ntap; k += blockDim.x) {
            double i = (double)(k - R);
            double g = exp(-i * i * inv2) / s;
            taps[k] = mode == MODE_DG ? (float)(g * (i * i - mi2) / (sg * sg * sg)) : (float)g;
        }
        __syncthreads();
    }
    const int n = axis == 0 ? (int)W : (int)H;
    const i64 step = axis == 0 ? 1 : W;
    const i64 hw = H * W;
    const float* src = in + plane * hw;
    float* dst = out + plane * hw;
    for (i64 idx = (i64)blockIdx.x * blockDim.x + threadIdx.x; idx < hw;
         idx += (i64)gridDim.x * blockDim.x) {
        const i64 yy = idx / W, xx = idx - yy * W;
        const int p = axis == 0 ? (int)xx : (int)yy;
        const float* line = src + (axis == 0 ? yy * W : xx);
        float acc = 0.0f;
        if (mode != MODE_ADJ) {
            if (p - R >= 0 && p + R < n) {
                const float* c = line + (i64)(p - R) * step;
                for (int k = 0; k < ntap; ++k) {
                    float t = in_smem ? taps[k] : tap_direct(k, R, sg, mode == MODE_DG);
                    acc = fmaf(t, c[(i64)k * step], acc);
                }
            } else {
                for (int k = 0; k < ntap; ++k) {
                    float t = in_smem ? taps[k] : tap_direct(k, R, sg, mode == MODE_DG);
                    acc = fmaf(t, line[(i64)reflect_idx(p + k - R, n) * step], acc);
                }
            }
        } else {
            // Σ over padded positions t with reflect(t) = p, t ∈ [−R, n−1+R], of
            // Σ_q g[t − q + R]·in[q] over source pixels q within R of t.
            const int P = n > 1 ? 2 * (n - 1) : 0;
            for (int fam = 0; fam < 2; ++fam) {
                if (n == 1 && fam == 1) break;
                if (fam == 1 && (p == 0 || p == n - 1)) break;
                int t = fam == 0 ? p : -p;
                if (n > 1) {
                    while (t - P >= -R) t -= P;
                    while (t < -R) t += P;
                } else {
                    t = -R;
                }
                for (; t <= n - 1 + R; t += (n > 1 ? P : 1)) {
                    int qlo = t - R > 0 ? t - R : 0;
                    int qhi = t + R < n - 1 ? t + R : n - 1;
                    for (int q = qlo; q <= qhi; ++q) {
                        int k = t - q + R;
                        float tk = in_smem ? taps[k] : tap_direct(k, R, sg, false);
                        acc = fmaf(tk, line[(i64)q * step], acc);
                    }
                }
            }
        }
        float* o = dst + (axis == 0 ? yy * W + xx : yy * W + xx);
        *o = accumulate ? *o + acc : acc;
    }
}

// partial[b·chunks + c] = Σ over chunk c of image b of a·g (double).
extern "C" __global__ void __launch_bounds__(BLUR_THREADS)
    dot_partials(const float* __restrict__ a, const float* __restrict__ g,
                 double* __restrict__ partial, i64 per_image) {
    __shared__ double sh[32];
    const i64 b = blockIdx.y;
    const float* ab = a + b * per_image;
    const float* gb = g + b * per_image;
    double acc = 0.0;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < per_image;
         i += (i64)gridDim.x * blockDim.x)
        acc += (double)ab[i] * (double)gb[i];
    acc = block_sum_d(acc, sh);
    if (threadIdx.x == 0) partial[b * gridDim.x + blockIdx.x] = acc;
}

// out[b] = Σ_c partial[b·chunks + c], in order.
extern "C" __global__ void dot_finish(const double* __restrict__ partial, float* __restrict__ out,
                                      i64 batch, i64 chunks) {
    GRID_STRIDE(b, batch) {
        double s = 0.0;
        for (i64 c = 0; c < chunks; ++c) s += partial[b * chunks + c];
        out[b] = (float)s;
    }
}
