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

// ---- The graph's fused attention (`Op::Attention`, `Op::AttentionBackward`): any head
// width d, dv ≤ 64 (zero-padded to 64 in shared memory), each operand read through its own
// (token, channel) strides so that [T, d] and [d, T] layouts need no copy. Per batch entry
// an operand is one contiguous [T, w] or [w, T] block. fp32 throughout.

// Rows r0.. of a [T, w] operand (element (t, c) at p[t·ts + c·cs]) into sh[R][·], zero
// outside t < T, c < w, times `mul`. Threads walk the operand's contiguous axis.
template <int R, int P>
__device__ __forceinline__ void at_load(float (*sh)[P], const float* __restrict__ p, i64 r0,
                                        i64 T, i64 w, i64 ts, i64 cs, float mul) {
    for (int e = threadIdx.x; e < R * AT_D; e += blockDim.x) {
        int r, c;
        if (cs == 1) {
            r = e / AT_D;
            c = e % AT_D;
        } else {
            r = e % R;
            c = e / R;
        }
        i64 t = r0 + r;
        sh[r][c] = (t < T && c < w) ? p[t * ts + c * cs] * mul : 0.0f;
    }
}

// The geometry under the names the kernel bodies use (`l` and `s` are taken there). The kernels
// take it as `const __grid_constant__`: passed as a plain by-value struct, ptxas copied part of it
// to a 16-byte stack frame in attn_bwd_dkdv (24 B of spill stores); read-only in the parameter
// space, it stays there like the scalar arguments it replaced.
#define AT_UNPACK(G)                                                                          \
    const i64 L = G.l, S = G.s, d = G.d, dv = G.dv, q_ts = G.q_ts, q_cs = G.q_cs,             \
              k_ts = G.k_ts, k_cs = G.k_cs, v_ts = G.v_ts, v_cs = G.v_cs, o_ts = G.o_ts,      \
              o_cs = G.o_cs

// out = softmax(scale·q·kᵀ)·v; with `lse` non-null also lse[b·L + i] = log Σ_j exp(s_ij)
// (the backward's statistics), and with `out` null only that. Grid (ceil(L/64), B), 256
// threads: 8 warps × 8 queries, keys in tiles of 32 (one per lane), online softmax.
extern "C" __global__ void __launch_bounds__(256)
    attn_fwd(const float* __restrict__ q, const float* __restrict__ k,
             const float* __restrict__ v, float* __restrict__ out, float* __restrict__ lse,
             const __grid_constant__ AttnGeo geo, float scale) {
    AT_UNPACK(geo);
    __shared__ __align__(16) float Qs[AT_BQ][AT_D];
    __shared__ float Ks[AT_BK][AT_D + 1];
    __shared__ float Vs[AT_BK][AT_D];
    __shared__ float Ps[8][AT_QW][AT_BK];
    const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5;
    const i64 b = blockIdx.y;
    const i64 q0 = (i64)blockIdx.x * AT_BQ;
    const float* qb = q + b * L * d;
    const float* kb = k + b * S * d;
    const float* vb = v + b * S * dv;
    at_load<AT_BQ, AT_D>(Qs, qb, q0, L, d, q_ts, q_cs, scale);
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
        at_load<AT_BK, AT_D + 1>(Ks, kb, t0, S, d, k_ts, k_cs, 1.0f);
        if (out) at_load<AT_BK, AT_D>(Vs, vb, t0, S, dv, v_ts, v_cs, 1.0f);
        __syncthreads();
        const bool key_ok = t0 + lane < S;
        float s[AT_QW];
#pragma unroll
        for (int i = 0; i < AT_QW; ++i) s[i] = 0.0f;
#pragma unroll 4
        for (int c = 0; c < AT_D; c += 4) {
            float k0 = Ks[lane][c], k1 = Ks[lane][c + 1], k2 = Ks[lane][c + 2],
                  k3 = Ks[lane][c + 3];
#pragma unroll
            for (int i = 0; i < AT_QW; ++i) {
                float4 qv = *reinterpret_cast<const float4*>(&Qs[wid * AT_QW + i][c]);
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
        if (out) {
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
        }
        __syncwarp();
    }
#pragma unroll
    for (int i = 0; i < AT_QW; ++i) {
        i64 qi = q0 + wid * AT_QW + i;
        if (qi >= L) continue;
        if (out) {
            float inv = 1.0f / l[i];
            float* orow = out + b * L * dv + qi * o_ts;
            if (lane < dv) orow[lane * o_cs] = o0[i] * inv;
            if (lane + 32 < dv) orow[(lane + 32) * o_cs] = o1[i] * inv;
        }
        if (lse && lane == 0) lse[b * L + qi] = m[i] + logf(l[i]);
    }
}

// rowdot[r] = Σ_c o[r, c]·g[r, c] for the B·L rows of the output and its cotangent; one warp per
// row.
extern "C" __global__ void attn_rowdot(const float* __restrict__ o, const float* __restrict__ g,
                                       float* __restrict__ rowdot, i64 rows,
                                       const __grid_constant__ AttnGeo geo) {
    const i64 L = geo.l, dv = geo.dv, o_ts = geo.o_ts, o_cs = geo.o_cs;
    i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (row >= rows) return;
    int lane = threadIdx.x & 31;
    i64 b = row / L, i = row - b * L;
    i64 base = b * L * dv + i * o_ts;
    double s = 0.0;
    for (i64 c = lane; c < dv; c += 32) s += (double)o[base + c * o_cs] * (double)g[base + c * o_cs];
    s = warp_sum_d(s);
    if (lane == 0) rowdot[row] = (float)s;
}

#define AB_QW 4   // rows per warp in the backward kernels
#define AB_B 32   // rows per block: 8 warps × 4

// dq = scale·Σ_j dS_ij·k_j with dS = P∘(dO·vᵀ − rowdot), P = exp(scale·q·kᵀ − lse). Grid
// (ceil(L/32), B), 256 threads: 8 warps × 4 queries, keys in tiles of 32.
extern "C" __global__ void __launch_bounds__(256)
    attn_bwd_dq(const float* __restrict__ q, const float* __restrict__ k,
                const float* __restrict__ v, const float* __restrict__ g,
                const float* __restrict__ lse, const float* __restrict__ rowdot,
                float* __restrict__ dq, const __grid_constant__ AttnGeo geo, float scale) {
    AT_UNPACK(geo);
    __shared__ __align__(16) float Qs[AB_B][AT_D];
    __shared__ __align__(16) float Gs[AB_B][AT_D];
    __shared__ float Ks[AT_BK][AT_D + 1];
    __shared__ float Vs[AT_BK][AT_D + 1];
    __shared__ float Xs[8][AB_QW][AT_BK];
    const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5;
    const i64 b = blockIdx.y;
    const i64 q0 = (i64)blockIdx.x * AB_B;
    const float* kb = k + b * S * d;
    const float* vb = v + b * S * dv;
    at_load<AB_B, AT_D>(Qs, q + b * L * d, q0, L, d, q_ts, q_cs, scale);
    at_load<AB_B, AT_D>(Gs, g + b * L * dv, q0, L, dv, o_ts, o_cs, 1.0f);
    float ls[AB_QW], dd[AB_QW], a0[AB_QW], a1[AB_QW];
#pragma unroll
    for (int i = 0; i < AB_QW; ++i) {
        i64 qi = q0 + wid * AB_QW + i;
        ls[i] = qi < L ? lse[b * L + qi] : 0.0f;
        dd[i] = qi < L ? rowdot[b * L + qi] : 0.0f;
        a0[i] = 0.0f;
        a1[i] = 0.0f;
    }
    for (i64 t0 = 0; t0 < S; t0 += AT_BK) {
        __syncthreads();
        at_load<AT_BK, AT_D + 1>(Ks, kb, t0, S, d, k_ts, k_cs, 1.0f);
        at_load<AT_BK, AT_D + 1>(Vs, vb, t0, S, dv, v_ts, v_cs, 1.0f);
        __syncthreads();
        const bool key_ok = t0 + lane < S;
        float s[AB_QW], dp[AB_QW];
#pragma unroll
        for (int i = 0; i < AB_QW; ++i) {
            s[i] = 0.0f;
            dp[i] = 0.0f;
        }
#pragma unroll
        for (int c = 0; c < AT_D; c += 4) {
            float k0 = Ks[lane][c], k1 = Ks[lane][c + 1], k2 = Ks[lane][c + 2],
                  k3 = Ks[lane][c + 3];
#pragma unroll
            for (int i = 0; i < AB_QW; ++i) {
                float4 qv = *reinterpret_cast<const float4*>(&Qs[wid * AB_QW + i][c]);
                s[i] = fmaf(qv.x, k0, s[i]);
                s[i] = fmaf(qv.y, k1, s[i]);
                s[i] = fmaf(qv.z, k2, s[i]);
                s[i] = fmaf(qv.w, k3, s[i]);
            }
        }
#pragma unroll
        for (int c = 0; c < AT_D; c += 4) {
            float v0 = Vs[lane][c], v1 = Vs[lane][c + 1], v2 = Vs[lane][c + 2],
                  v3 = Vs[lane][c + 3];
#pragma unroll
            for (int i = 0; i < AB_QW; ++i) {
                float4 gv = *reinterpret_cast<const float4*>(&Gs[wid * AB_QW + i][c]);
                dp[i] = fmaf(gv.x, v0, dp[i]);
                dp[i] = fmaf(gv.y, v1, dp[i]);
                dp[i] = fmaf(gv.z, v2, dp[i]);
                dp[i] = fmaf(gv.w, v3, dp[i]);
            }
        }
#pragma unroll
        for (int i = 0; i < AB_QW; ++i) {
            float p = key_ok ? expf(s[i] - ls[i]) : 0.0f;
            Xs[wid][i][lane] = p * (dp[i] - dd[i]);
        }
        __syncwarp();
#pragma unroll
        for (int i = 0; i < AB_QW; ++i) {
            float x0 = a0[i], x1 = a1[i];
#pragma unroll 8
            for (int j = 0; j < AT_BK; ++j) {
                float ds = Xs[wid][i][j];
                x0 = fmaf(ds, Ks[j][lane], x0);
                x1 = fmaf(ds, Ks[j][lane + 32], x1);
            }
            a0[i] = x0;
            a1[i] = x1;
        }
        __syncwarp();
    }
#pragma unroll
    for (int i = 0; i < AB_QW; ++i) {
        i64 qi = q0 + wid * AB_QW + i;
        if (qi >= L) continue;
        float* row = dq + b * L * d + qi * q_ts;
        if (lane < d) row[lane * q_cs] = a0[i] * scale;
        if (lane + 32 < d) row[(lane + 32) * q_cs] = a1[i] * scale;
    }
}

// want_k: dk = Σ_i dS_ij·(scale·q_i); else dv = Σ_i P_ij·dO_i. Grid (ceil(S/32), B), 256
// threads: 8 warps × 4 keys, queries in tiles of 32 (one per lane).
extern "C" __global__ void __launch_bounds__(256)
    attn_bwd_dkdv(const float* __restrict__ q, const float* __restrict__ k,
                  const float* __restrict__ v, const float* __restrict__ g,
                  const float* __restrict__ lse, const float* __restrict__ rowdot,
                  float* __restrict__ dst, const __grid_constant__ AttnGeo geo, float scale,
                  int want_k) {
    AT_UNPACK(geo);
    __shared__ __align__(16) float Ks[AB_B][AT_D];
    __shared__ __align__(16) float Vs[AB_B][AT_D];
    __shared__ float Qs[AT_BK][AT_D + 1];
    __shared__ float Gs[AT_BK][AT_D + 1];
    __shared__ float Ls[AT_BK];
    __shared__ float Dl[AT_BK];
    __shared__ float Xs[8][AB_QW][AT_BK];
    const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5;
    const i64 b = blockIdx.y;
    const i64 k0 = (i64)blockIdx.x * AB_B;
    const float* qb = q + b * L * d;
    const float* gb = g + b * L * dv;
    at_load<AB_B, AT_D>(Ks, k + b * S * d, k0, S, d, k_ts, k_cs, 1.0f);
    if (want_k) at_load<AB_B, AT_D>(Vs, v + b * S * dv, k0, S, dv, v_ts, v_cs, 1.0f);
    float a0[AB_QW], a1[AB_QW];
#pragma unroll
    for (int j = 0; j < AB_QW; ++j) {
        a0[j] = 0.0f;
        a1[j] = 0.0f;
    }
    for (i64 i0 = 0; i0 < L; i0 += AT_BK) {
        __syncthreads();
        at_load<AT_BK, AT_D + 1>(Qs, qb, i0, L, d, q_ts, q_cs, scale);
        at_load<AT_BK, AT_D + 1>(Gs, gb, i0, L, dv, o_ts, o_cs, 1.0f);
        if (tid < AT_BK) {
            i64 t = i0 + tid;
            Ls[tid] = t < L ? lse[b * L + t] : 0.0f;
            Dl[tid] = t < L ? rowdot[b * L + t] : 0.0f;
        }
        __syncthreads();
        const bool q_ok = i0 + lane < L;
        float s[AB_QW], dp[AB_QW];
#pragma unroll
        for (int j = 0; j < AB_QW; ++j) {
            s[j] = 0.0f;
            dp[j] = 0.0f;
        }
#pragma unroll 4
        for (int c = 0; c < AT_D; c += 4) {
#pragma unroll
            for (int j = 0; j < AB_QW; ++j) {
                float4 kv = *reinterpret_cast<const float4*>(&Ks[wid * AB_QW + j][c]);
                s[j] = fmaf(kv.x, Qs[lane][c], s[j]);
                s[j] = fmaf(kv.y, Qs[lane][c + 1], s[j]);
                s[j] = fmaf(kv.z, Qs[lane][c + 2], s[j]);
                s[j] = fmaf(kv.w, Qs[lane][c + 3], s[j]);
                if (want_k) {
                    float4 vv = *reinterpret_cast<const float4*>(&Vs[wid * AB_QW + j][c]);
                    dp[j] = fmaf(vv.x, Gs[lane][c], dp[j]);
                    dp[j] = fmaf(vv.y, Gs[lane][c + 1], dp[j]);
                    dp[j] = fmaf(vv.z, Gs[lane][c + 2], dp[j]);
                    dp[j] = fmaf(vv.w, Gs[lane][c + 3], dp[j]);
                }
            }
        }
#pragma unroll
        for (int j = 0; j < AB_QW; ++j) {
            float p = q_ok ? expf(s[j] - Ls[lane]) : 0.0f;
            Xs[wid][j][lane] = want_k ? p * (dp[j] - Dl[lane]) : p;
        }
        __syncwarp();
        // dk reads the scaled queries, dv the output cotangent.
        float (*R)[AT_D + 1] = want_k ? Qs : Gs;
#pragma unroll
        for (int j = 0; j < AB_QW; ++j) {
            float x0 = a0[j], x1 = a1[j];
#pragma unroll 8
            for (int i = 0; i < AT_BK; ++i) {
                float w = Xs[wid][j][i];
                x0 = fmaf(w, R[i][lane], x0);
                x1 = fmaf(w, R[i][lane + 32], x1);
            }
            a0[j] = x0;
            a1[j] = x1;
        }
        __syncwarp();
    }
    const i64 w = want_k ? d : dv;
    const i64 ts = want_k ? k_ts : v_ts, cs = want_k ? k_cs : v_cs;
#pragma unroll
    for (int j = 0; j < AB_QW; ++j) {
        i64 kj = k0 + wid * AB_QW + j;
        if (kj >= S) continue;
        float* row = dst + b * S * w + kj * ts;
        if (lane < w) row[lane * cs] = a0[j];
        if (lane + 32 < w) row[(lane + 32) * cs] = a1[j];
    }
}
