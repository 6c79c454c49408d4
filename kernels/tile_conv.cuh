// The implicit-GEMM gathers of a 2-D convolution (NCHW, OIHW weights, groups), shared by the
// fp32 kernels (conv.cu, on tile.cuh) and the bf16 tensor-core kernels (conv_tc.cu, on
// tile_tc.cuh): the im2col matrix is never built; loaders fetch its elements straight from the
// image in the thread→element maps of tile.cuh (KFAST for A, XFAST for B, BK = 16 per call).
//
//   forward        y[g]  (Og × N·OH·OW)  = W[g] (Og × K) · col(x)       K = (kh, kw, ci) order
//   backward-input dx[g] (Cg × N·H·W)    = W[g]ᵀ · gather(dy)           K = (kh, kw, o) order
// The K orders put the channel fastest so a loader walks K with a cheap carry instead of
// dividing per element; per-thread pixel coordinates are computed once per block.

// `ConvGeo` is defined in abi.cuh (shared with Rust).

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

// The forward loaders of group g for the tile at output channel m0, pixel n0.
template <int BM, int BN>
__device__ __forceinline__ void conv_fwd_loaders(const float* x, const float* w, const ConvGeo& G,
                                                 int g, int m0, i64 n0, FwdA<BM>& la,
                                                 FwdB<BN>& lb) {
    const int cg = (int)(G.c / G.groups), og = (int)(G.o / G.groups);
    const int khkw = (int)(G.kh * G.kw);
    const i64 ohow = G.oh * G.ow;
    const i64 np = G.n * ohow;
    la = FwdA<BM>{w + (i64)g * og * ((i64)khkw * cg), og, cg, khkw, m0};
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

// The backward-input loaders of group g for the tile at input channel m0, pixel n0.
template <int BM, int BN>
__device__ __forceinline__ void conv_bwd_input_loaders(const float* dy, const float* w,
                                                       const ConvGeo& G, int g, int m0, i64 n0,
                                                       BinA<BM>& la, BinB<BN>& lb) {
    const int cg = (int)(G.c / G.groups), og = (int)(G.o / G.groups);
    const int khkw = (int)(G.kh * G.kw);
    const i64 hw = G.h * G.w;
    const i64 np = G.n * hw;
    la = BinA<BM>{w + (i64)g * og * cg * khkw, og, cg, khkw, m0};
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
