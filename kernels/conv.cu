// 2-D convolution (NCHW, OIHW weights, groups) as implicit GEMM on tile.cuh: the im2col
// matrix is never built; loaders gather its elements straight from the image.
//
//   forward        y[g]  (Og × N·OH·OW)  = W[g] (Og × K) · col(x)       K = (kh, kw, ci) order
//   backward-input dx[g] (Cg × N·H·W)    = W[g]ᵀ · gather(dy)           K = (kh, kw, o) order
//   backward-weight dw[g] (Og × Cg·kh·kw) = dy[g] · col(x)ᵀ              K = N·OH·OW pixels
// Any of the three may be split over K (blockIdx.z = group·splits + split) when the output
// has too few tiles to fill the device: split s writes its partial product to out + s·total
// and splitk_reduce sums the splits in a fixed order (deterministic, no atomics), adding the
// bias for the forward pass. With splits = 1, out is the result itself.
// The K orders put the channel fastest so a loader walks K with a cheap carry instead of
// dividing per element; per-thread pixel coordinates are computed once per block.

struct ConvGeo {
    i64 n, c, h, w, o, kh, kw, oh, ow, stride, pad, groups;
};

// ---------------------------------------------------------------- forward
template <int BM>
struct FwdA {  // A(m, k) = w[g·Og + m][ci][ki][kj], k = (ki·kw + kj)·Cg + ci; K-fast map.
    const float* w;
    int og, cg, khkw, m0;
    template <int N>
    __device__ __forceinline__ void load(i64 k0, i64 ke, float (&r)[N]) const {
        int k = (int)k0 + (threadIdx.x & 15);
        bool kv = k < ke;
        int rr = k / cg, ci = k - rr * cg;
        int off = ci * khkw + rr;
        i64 kg = (i64)cg * khkw;
#pragma unroll
        for (int e = 0; e < N; ++e) {
            int m = m0 + ((int)threadIdx.x >> 4) + 16 * e;
            r[e] = (kv && m < og) ? w[(i64)m * kg + off] : 0.0f;
        }
    }
};

template <int BN>
struct FwdB {  // B(k, p) = x[ni][g·Cg + ci][oy·s − pad + ki][ox·s − pad + kj]; N-fast map.
    const float* xb;  // image ni, channel g·Cg
    int cg, kw, h, w, iy0, ix0;
    bool col_ok;
    template <int N>
    __device__ __forceinline__ void load(i64 k0, i64 ke, float (&r)[N]) const {
        const int S = MM_THREADS / BN;
        int k = (int)k0 + (int)threadIdx.x / BN;
        int rr = k / cg, ci = k - rr * cg;
        int ki = rr / kw, kj = rr - ki * kw;
        const i64 hw = (i64)h * w;
#pragma unroll
        for (int e = 0; e < N; ++e) {
            float v = 0.0f;
            int iy = iy0 + ki, ix = ix0 + kj;
            if (col_ok && k < ke && iy >= 0 && iy < h && ix >= 0 && ix < w)
                v = xb[ci * hw + (i64)iy * w + ix];
            r[e] = v;
            k += S;
            ci += S;
            while (ci >= cg) {
                ci -= cg;
                if (++kj == kw) {
                    kj = 0;
                    ++ki;
                }
            }
        }
    }
};

template <int BM, int BN>
__device__ __forceinline__ void conv_fwd_body(const float* __restrict__ x,
                                              const float* __restrict__ w,
                                              const float* __restrict__ bias,
                                              float* __restrict__ y, const ConvGeo& G,
                                              int splits, i64 chunk) {
    const int g = blockIdx.z / splits, sp = blockIdx.z % splits;
    const int cg = (int)(G.c / G.groups), og = (int)(G.o / G.groups);
    const int khkw = (int)(G.kh * G.kw);
    const i64 K = (i64)khkw * cg;
    const i64 ohow = G.oh * G.ow;
    const i64 np = G.n * ohow;
    const int m0 = blockIdx.y * BM;
    const i64 n0 = (i64)blockIdx.x * BN;

    FwdA<BM> la{w + (i64)g * og * K, og, cg, khkw, m0};
    FwdB<BN> lb;
    {
        i64 p = n0 + (int)threadIdx.x % BN;
        lb.col_ok = p < np;
        if (!lb.col_ok) p = 0;
        i64 ni = p / ohow, rem = p - ni * ohow;
        int oy = (int)(rem / G.ow), ox = (int)(rem - (i64)oy * G.ow);
        lb.xb = x + (ni * G.c + (i64)g * cg) * G.h * G.w;
        lb.cg = cg;
        lb.kw = (int)G.kw;
        lb.h = (int)G.h;
        lb.w = (int)G.w;
        lb.iy0 = oy * (int)G.stride - (int)G.pad;
        lb.ix0 = ox * (int)G.stride - (int)G.pad;
    }
    const i64 kb = (i64)sp * chunk;
    const i64 ke = kb + chunk < K ? kb + chunk : K;
    float acc[BM / 16][BN / 16];
    mm_mainloop<BM, BN, true, false>(la, lb, kb, ke, acc);
    float* out = y + (i64)sp * (np * G.o);
#pragma unroll
    for (int j = 0; j < BN / 16; ++j) {
        i64 p = n0 + mm_col<BN>(j);
        if (p >= np) continue;
        i64 ni = p / ohow, rem = p - ni * ohow;
        float* yp = out + (ni * G.o + (i64)g * og) * ohow + rem;
#pragma unroll
        for (int i = 0; i < BM / 16; ++i) {
            int m = m0 + mm_row<BM>(i);
            if (m < og) {
                float b = bias ? bias[g * og + m] : 0.0f;
                yp[(i64)m * ohow] = acc[i][j] + b;
            }
        }
    }
}

// ---------------------------------------------------------------- backward-input
template <int BM>
struct BinA {  // A(c, k) = w[g·Og + o][c][ki][kj], k = (ki·kw + kj)·Og + o; K-fast map.
    const float* w;
    int og, cg, khkw, m0;
    template <int N>
    __device__ __forceinline__ void load(i64 k0, i64 ke, float (&r)[N]) const {
        int k = (int)k0 + (threadIdx.x & 15);
        bool kv = k < ke;
        int rr = k / og, o = k - rr * og;
        i64 base = (i64)o * cg * khkw + rr;
#pragma unroll
        for (int e = 0; e < N; ++e) {
            int c = m0 + ((int)threadIdx.x >> 4) + 16 * e;
            r[e] = (kv && c < cg) ? w[base + (i64)c * khkw] : 0.0f;
        }
    }
};

template <int BN>
struct BinB {  // B(k, p) = dy[ni][g·Og + o][oy][ox] with oy·s = iy + pad − ki (if integral).
    const float* dyb;  // image ni, channel g·Og
    int og, kw, oh, ow, s, ty0, tx0;
    bool col_ok;
    template <int N>
    __device__ __forceinline__ void load(i64 k0, i64 ke, float (&r)[N]) const {
        const int S = MM_THREADS / BN;
        int k = (int)k0 + (int)threadIdx.x / BN;
        int rr = k / og, o = k - rr * og;
        int ki = rr / kw, kj = rr - ki * kw;
        const i64 ohow = (i64)oh * ow;
#pragma unroll
        for (int e = 0; e < N; ++e) {
            float v = 0.0f;
            int ty = ty0 - ki, tx = tx0 - kj;
            if (col_ok && k < ke && ty >= 0 && tx >= 0) {
                // Stride 1 (every UNet conv but the downsamplers) needs no division.
                int oy = ty, ox = tx;
                bool hit = true;
                if (s != 1) {
                    oy = ty / s;
                    ox = tx / s;
                    hit = oy * s == ty && ox * s == tx;
                }
                if (hit && oy < oh && ox < ow) v = dyb[o * ohow + (i64)oy * ow + ox];
            }
            r[e] = v;
            k += S;
            o += S;
            while (o >= og) {
                o -= og;
                if (++kj == kw) {
                    kj = 0;
                    ++ki;
                }
            }
        }
    }
};

template <int BM, int BN>
__device__ __forceinline__ void conv_bwd_input_body(const float* __restrict__ dy,
                                                    const float* __restrict__ w,
                                                    float* __restrict__ dx, const ConvGeo& G,
                                                    int splits, i64 chunk) {
    const int g = blockIdx.z / splits, sp = blockIdx.z % splits;
    const int cg = (int)(G.c / G.groups), og = (int)(G.o / G.groups);
    const int khkw = (int)(G.kh * G.kw);
    const i64 K = (i64)khkw * og;
    const i64 hw = G.h * G.w;
    const i64 np = G.n * hw;
    const int m0 = blockIdx.y * BM;
    const i64 n0 = (i64)blockIdx.x * BN;

    BinA<BM> la{w + (i64)g * og * cg * khkw, og, cg, khkw, m0};
    BinB<BN> lb;
    {
        i64 p = n0 + (int)threadIdx.x % BN;
        lb.col_ok = p < np;
        if (!lb.col_ok) p = 0;
        i64 ni = p / hw, rem = p - ni * hw;
        int iy = (int)(rem / G.w), ix = (int)(rem - (i64)iy * G.w);
        lb.dyb = dy + (ni * G.o + (i64)g * og) * G.oh * G.ow;
        lb.og = og;
        lb.kw = (int)G.kw;
        lb.oh = (int)G.oh;
        lb.ow = (int)G.ow;
        lb.s = (int)G.stride;
        lb.ty0 = iy + (int)G.pad;
        lb.tx0 = ix + (int)G.pad;
    }
    const i64 kb = (i64)sp * chunk;
    const i64 ke = kb + chunk < K ? kb + chunk : K;
    float acc[BM / 16][BN / 16];
    mm_mainloop<BM, BN, true, false>(la, lb, kb, ke, acc);
    float* out = dx + (i64)sp * (np * G.c);
#pragma unroll
    for (int j = 0; j < BN / 16; ++j) {
        i64 p = n0 + mm_col<BN>(j);
        if (p >= np) continue;
        i64 ni = p / hw, rem = p - ni * hw;
        float* xp = out + (ni * G.c + (i64)g * cg) * hw + rem;
#pragma unroll
        for (int i = 0; i < BM / 16; ++i) {
            int c = m0 + mm_row<BM>(i);
            if (c < cg) xp[(i64)c * hw] = acc[i][j];
        }
    }
}

// ---------------------------------------------------------------- backward-weight
template <int BM>
struct BwA {  // A(m, p) = dy[ni][g·Og + m][oy][ox], p = (ni, oy, ox); K-fast map.
    const float* dy;  // channel g·Og of image 0
    i64 ohow, o_stride;  // o_stride = O·OH·OW (one image)
    int og, m0;
    template <int N>
    __device__ __forceinline__ void load(i64 k0, i64 ke, float (&r)[N]) const {
        i64 p = k0 + (threadIdx.x & 15);
        bool kv = p < ke;
        i64 ni = kv ? p / ohow : 0;
        i64 base = ni * o_stride + (p - ni * ohow);
#pragma unroll
        for (int e = 0; e < N; ++e) {
            int m = m0 + ((int)threadIdx.x >> 4) + 16 * e;
            r[e] = (kv && m < og) ? dy[base + (i64)m * ohow] : 0.0f;
        }
    }
};

template <int BN>
struct BwB {  // B(p, col) = x[ni][g·Cg + ci][oy·s − pad + ki][ox·s − pad + kj]; K-fast map.
    const float* x;  // channel g·Cg of image 0
    i64 c_stride, ohow;  // c_stride = C·H·W (one image)
    int h, w, ow, s, pad;
    int off[BN / 16];  // ci·H·W + ki·W + kj of the thread's columns (−1: outside)
    int kij[BN / 16];  // ki << 16 | kj
    template <int N>
    __device__ __forceinline__ void load(i64 k0, i64 ke, float (&r)[N]) const {
        i64 p = k0 + (threadIdx.x & 15);
        bool kv = p < ke;
        i64 ni = kv ? p / ohow : 0;
        int rem = (int)(p - ni * ohow);
        int oy = rem / ow, ox = rem - oy * ow;
        int iy0 = oy * s - pad, ix0 = ox * s - pad;
        const float* base = x + ni * c_stride + (i64)iy0 * w + ix0;
#pragma unroll
        for (int e = 0; e < N; ++e) {
            int iy = iy0 + (kij[e] >> 16), ix = ix0 + (kij[e] & 0xffff);
            r[e] = (kv && off[e] >= 0 && iy >= 0 && iy < h && ix >= 0 && ix < w)
                       ? base[off[e]]
                       : 0.0f;
        }
    }
};

template <int BM, int BN>
__device__ __forceinline__ void conv_bwd_weight_body(const float* __restrict__ x,
                                                     const float* __restrict__ dy,
                                                     float* __restrict__ out, const ConvGeo& G,
                                                     int splits, i64 chunk) {
    const int g = blockIdx.z / splits, sp = blockIdx.z % splits;
    const int cg = (int)(G.c / G.groups), og = (int)(G.o / G.groups);
    const int khkw = (int)(G.kh * G.kw);
    const int kg = cg * khkw;
    const i64 ohow = G.oh * G.ow;
    const i64 K = G.n * ohow;
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * BN;
    const i64 kb = (i64)sp * chunk;
    const i64 ke = kb + chunk < K ? kb + chunk : K;

    BwA<BM> la{dy + (i64)g * og * ohow, ohow, G.o * ohow, og, m0};
    BwB<BN> lb;
    lb.x = x + (i64)g * cg * G.h * G.w;
    lb.c_stride = G.c * G.h * G.w;
    lb.ohow = ohow;
    lb.h = (int)G.h;
    lb.w = (int)G.w;
    lb.ow = (int)G.ow;
    lb.s = (int)G.stride;
    lb.pad = (int)G.pad;
#pragma unroll
    for (int e = 0; e < BN / 16; ++e) {
        int col = n0 + ((int)threadIdx.x >> 4) + 16 * e;
        if (col < kg) {
            int ci = col / khkw, rr = col - ci * khkw;
            int ki = rr / (int)G.kw, kj = rr - ki * (int)G.kw;
            lb.off[e] = ci * (int)(G.h * G.w) + ki * (int)G.w + kj;
            lb.kij[e] = (ki << 16) | kj;
        } else {
            lb.off[e] = -1;
            lb.kij[e] = 0;
        }
    }
    float acc[BM / 16][BN / 16];
    mm_mainloop<BM, BN, true, true>(la, lb, kb, ke, acc);
    // Partial sums of split sp go to out[sp][O][Kg] (out is dw itself when splits == 1).
    float* o = out + ((i64)sp * G.o + (i64)g * og) * kg;
#pragma unroll
    for (int i = 0; i < BM / 16; ++i) {
        int m = m0 + mm_row<BM>(i);
        if (m >= og) continue;
#pragma unroll
        for (int j = 0; j < BN / 16; ++j) {
            int col = n0 + mm_col<BN>(j);
            if (col < kg) o[(i64)m * kg + col] = acc[i][j];
        }
    }
}

// out[i] = Σ_s ws[s·total + i], s in order, plus bias[(i / plane) % channels] when given.
extern "C" __global__ void splitk_reduce(const float* __restrict__ ws, float* __restrict__ out,
                                         i64 total, int splits, const float* __restrict__ bias,
                                         i64 channels, i64 plane) {
    GRID_STRIDE(i, total) {
        float acc = 0.0f;
        for (int s = 0; s < splits; ++s) acc += ws[(i64)s * total + i];
        if (bias) acc += bias[(i / plane) % channels];
        out[i] = acc;
    }
}

extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) conv_fwd_128x128(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ y, ConvGeo G, int splits, i64 chunk) {
    conv_fwd_body<128, 128>(x, w, bias, y, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) conv_bwd_input_128x128(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_input_body<128, 128>(dy, w, dx, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) conv_bwd_weight_128x128(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ out, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_weight_body<128, 128>(x, dy, out, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) conv_fwd_64x128(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ y, ConvGeo G, int splits, i64 chunk) {
    conv_fwd_body<64, 128>(x, w, bias, y, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) conv_bwd_input_64x128(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_input_body<64, 128>(dy, w, dx, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) conv_bwd_weight_64x128(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ out, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_weight_body<64, 128>(x, dy, out, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) conv_fwd_64x64(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ y, ConvGeo G, int splits, i64 chunk) {
    conv_fwd_body<64, 64>(x, w, bias, y, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) conv_bwd_input_64x64(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_input_body<64, 64>(dy, w, dx, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) conv_bwd_weight_64x64(
    const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ out, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_weight_body<64, 64>(x, dy, out, G, splits, chunk);
}
