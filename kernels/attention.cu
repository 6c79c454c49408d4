// Softmax over the last axis (forward, backward) and a fused attention forward for head
// width 64: out = softmax(scale·Q·Kᵀ)·V without materialising the score matrix (online
// softmax over key tiles, as in FlashAttention), fp32 throughout.

// One warp per row of length d.
extern "C" __global__ void softmax_fwd(const float* __restrict__ x, float* __restrict__ y,
                                       i64 rows, i64 d) {
    i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    int lane = threadIdx.x & 31;
    const float* xr = x + row * d;
    float* yr = y + row * d;
    float m = __int_as_float(0xff800000);
    for (i64 k = lane; k < d; k += 32) m = fmaxf(m, xr[k]);
    m = warp_max(m);
    double s = 0.0;
    for (i64 k = lane; k < d; k += 32) {
        float e = expf(xr[k] - m);
        yr[k] = e;
        s += (double)e;
    }
    float inv = (float)(1.0 / warp_sum_d(s));
    for (i64 k = lane; k < d; k += 32) yr[k] *= inv;
}

// dx = y·(dy − Σ y·dy)
extern "C" __global__ void softmax_bwd(const float* __restrict__ y, const float* __restrict__ dy,
                                       float* __restrict__ dx, i64 rows, i64 d) {
    i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    int lane = threadIdx.x & 31;
    const float* yr = y + row * d;
    const float* gr = dy + row * d;
    double s = 0.0;
    for (i64 k = lane; k < d; k += 32) s += (double)yr[k] * (double)gr[k];
    float dot = (float)warp_sum_d(s);
    for (i64 k = lane; k < d; k += 32) dx[row * d + k] = yr[k] * (gr[k] - dot);
}

#define AT_D 64
#define AT_BQ 64   // queries per block: 8 warps × 8
#define AT_BK 32   // keys per tile: one per lane
#define AT_QW 8    // queries per warp

// q [B, L, 64], k/v [B, S, 64], out [B, L, 64]; grid (ceil(L/64), B), 256 threads.
extern "C" __global__ void __launch_bounds__(256)
    attention_fwd_d64(const float* __restrict__ q, const float* __restrict__ k,
                      const float* __restrict__ v, float* __restrict__ out, i64 L, i64 S,
                      float scale) {
    __shared__ __align__(16) float Qs[AT_BQ][AT_D];
    __shared__ float Ks[AT_BK][AT_D + 1];
    __shared__ float Vs[AT_BK][AT_D];
    __shared__ float Ps[8][AT_QW][AT_BK];
    const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5;
    const i64 b = blockIdx.y;
    const i64 q0 = (i64)blockIdx.x * AT_BQ;
    const float* qb = q + b * L * AT_D;
    const float* kb = k + b * S * AT_D;
    const float* vb = v + b * S * AT_D;
    for (int e = tid; e < AT_BQ * AT_D; e += 256) {
        int r = e / AT_D, c = e % AT_D;
        Qs[r][c] = (q0 + r < L) ? qb[(q0 + r) * AT_D + c] * scale : 0.0f;
    }
    float m[AT_QW], l[AT_QW], o0[AT_QW], o1[AT_QW];
#pragma unroll
    for (int i = 0; i < AT_QW; ++i) {
        m[i] = __int_as_float(0xff800000);
        l[i] = 0.0f;
        o0[i] = 0.0f;
        o1[i] = 0.0f;
    }
    for (i64 t0 = 0; t0 < S; t0 += AT_BK) {
        __syncthreads();
        for (int e = tid; e < AT_BK * AT_D; e += 256) {
            int r = e / AT_D, c = e % AT_D;
            bool ok = t0 + r < S;
            Ks[r][c] = ok ? kb[(t0 + r) * AT_D + c] : 0.0f;
            Vs[r][c] = ok ? vb[(t0 + r) * AT_D + c] : 0.0f;
        }
        __syncthreads();
        const bool key_ok = t0 + lane < S;
        float s[AT_QW];
#pragma unroll
        for (int i = 0; i < AT_QW; ++i) s[i] = 0.0f;
#pragma unroll 4
        for (int d = 0; d < AT_D; d += 4) {
            float k0 = Ks[lane][d], k1 = Ks[lane][d + 1], k2 = Ks[lane][d + 2],
                  k3 = Ks[lane][d + 3];
#pragma unroll
            for (int i = 0; i < AT_QW; ++i) {
                float4 qv = *reinterpret_cast<const float4*>(&Qs[wid * AT_QW + i][d]);
                s[i] = fmaf(qv.x, k0, s[i]);
                s[i] = fmaf(qv.y, k1, s[i]);
                s[i] = fmaf(qv.z, k2, s[i]);
                s[i] = fmaf(qv.w, k3, s[i]);
            }
        }
#pragma unroll
        for (int i = 0; i < AT_QW; ++i) {
            float si = key_ok ? s[i] : __int_as_float(0xff800000);
            float mn = fmaxf(m[i], warp_max(si));
            float p = key_ok ? expf(si - mn) : 0.0f;
            float corr = expf(m[i] - mn);
            l[i] = l[i] * corr + warp_sum(p);
            o0[i] *= corr;
            o1[i] *= corr;
            m[i] = mn;
            Ps[wid][i][lane] = p;
        }
        __syncwarp();
#pragma unroll
        for (int i = 0; i < AT_QW; ++i) {
            float a0 = o0[i], a1 = o1[i];
#pragma unroll 8
            for (int j = 0; j < AT_BK; ++j) {
                float pj = Ps[wid][i][j];
                a0 = fmaf(pj, Vs[j][lane], a0);
                a1 = fmaf(pj, Vs[j][lane + 32], a1);
            }
            o0[i] = a0;
            o1[i] = a1;
        }
        __syncwarp();
    }
#pragma unroll
    for (int i = 0; i < AT_QW; ++i) {
        i64 qi = q0 + wid * AT_QW + i;
        if (qi < L) {
            float inv = 1.0f / l[i];
            out[(b * L + qi) * AT_D + lane] = o0[i] * inv;
            out[(b * L + qi) * AT_D + lane + 32] = o1[i] * inv;
        }
    }
}
