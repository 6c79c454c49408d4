// 2-D convolution (NCHW, OIHW weights, groups) in fp32 as implicit GEMM on tile.cuh, with the
// im2col gathers of tile_conv.cuh (ConvGeo, the forward and backward-input loaders):
//
//   forward        y[g]  (Og × N·OH·OW)  = W[g] (Og × K) · col(x)       K = (kh, kw, ci) order
//   backward-input dx[g] (Cg × N·H·W)    = W[g]ᵀ · gather(dy)           K = (kh, kw, o) order
//   backward-weight dw[g] (Og × Cg·kh·kw) = dy[g] · col(x)ᵀ              K = N·OH·OW pixels
// Any of the three may be split over K (blockIdx.z = group·splits + split) when the output
// has too few tiles to fill the device: split s writes its partial product to out + s·total
// and splitk_reduce sums the splits in a fixed order (deterministic, no atomics), adding the
// bias for the forward pass. With splits = 1, out is the result itself.

// ---------------------------------------------------------------- forward
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

    FwdA<BM> la;
    FwdB<BN> lb;
    conv_fwd_loaders<BM, BN>(x, w, G, g, m0, n0, la, lb);
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

    BinA<BM> la;
    BinB<BN> lb;
    conv_bwd_input_loaders<BM, BN>(dy, w, G, g, m0, n0, la, lb);
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
