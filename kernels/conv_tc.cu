// 2-D convolution forward and backward-input on bf16 tensor cores (v1): the implicit GEMMs of
// conv.cu with the same gathers (tile_conv.cuh) and the same split-K contract (split s writes
// out + s·total; conv.cu's splitk_reduce sums and adds the bias), on tile_tc.cuh's main loop.
// Storage stays fp32; both operands are rounded to bf16 (nearest-even) as they are staged,
// products are exact in fp32 and accumulate in fp32. The weight gradient stays in conv.cu
// (sampling needs only the forward pass and the input gradient).
//
// Kernel names carry the version (v1: plain shared-memory fragment loads, no ldmatrix, no
// cp.async) so a timing in a report names the code it measured.

template <int BM, int BN>
__device__ __forceinline__ void conv_fwd_tc_body(const float* __restrict__ x,
                                                 const float* __restrict__ w,
                                                 const float* __restrict__ bias,
                                                 float* __restrict__ y, const ConvGeo& G,
                                                 int splits, i64 chunk) {
    const int g = blockIdx.z / splits, sp = blockIdx.z % splits;
    const int og = (int)(G.o / G.groups);
    const i64 K = G.kh * G.kw * (G.c / G.groups);
    const i64 ohow = G.oh * G.ow;
    const i64 np = G.n * ohow;
    const int m0 = blockIdx.y * BM;
    const i64 n0 = (i64)blockIdx.x * BN;

    FwdA<BM> la;
    FwdB<BN> lb;
    conv_fwd_loaders<BM, BN>(x, w, G, g, m0, n0, la, lb);
    const i64 kb = (i64)sp * chunk;
    const i64 ke = kb + chunk < K ? kb + chunk : K;
    float acc[BM / 32][BN / 32][4];
    tc_mainloop<BM, BN, true, false>(la, lb, kb, ke, acc);
    float* out = y + (i64)sp * (np * G.o);
#pragma unroll
    for (int j = 0; j < BN / 32; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
            const i64 p = n0 + tc_col<BN>(j, c);
            if (p >= np) continue;
            const i64 ni = p / ohow, rem = p - ni * ohow;
            float* yp = out + (ni * G.o + (i64)g * og) * ohow + rem;
#pragma unroll
            for (int i = 0; i < BM / 32; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int m = m0 + tc_row<BM>(i, 2 * h);
                    if (m < og) {
                        const float b = bias ? bias[g * og + m] : 0.0f;
                        yp[(i64)m * ohow] = acc[i][j][2 * h + c] + b;
                    }
                }
        }
}

template <int BM, int BN>
__device__ __forceinline__ void conv_bwd_input_tc_body(const float* __restrict__ dy,
                                                       const float* __restrict__ w,
                                                       float* __restrict__ dx, const ConvGeo& G,
                                                       int splits, i64 chunk) {
    const int g = blockIdx.z / splits, sp = blockIdx.z % splits;
    const int cg = (int)(G.c / G.groups);
    const i64 K = G.kh * G.kw * (G.o / G.groups);
    const i64 hw = G.h * G.w;
    const i64 np = G.n * hw;
    const int m0 = blockIdx.y * BM;
    const i64 n0 = (i64)blockIdx.x * BN;

    BinA<BM> la;
    BinB<BN> lb;
    conv_bwd_input_loaders<BM, BN>(dy, w, G, g, m0, n0, la, lb);
    const i64 kb = (i64)sp * chunk;
    const i64 ke = kb + chunk < K ? kb + chunk : K;
    float acc[BM / 32][BN / 32][4];
    tc_mainloop<BM, BN, true, false>(la, lb, kb, ke, acc);
    float* out = dx + (i64)sp * (np * G.c);
#pragma unroll
    for (int j = 0; j < BN / 32; ++j)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
            const i64 p = n0 + tc_col<BN>(j, c);
            if (p >= np) continue;
            const i64 ni = p / hw, rem = p - ni * hw;
            float* xp = out + (ni * G.c + (i64)g * cg) * hw + rem;
#pragma unroll
            for (int i = 0; i < BM / 32; ++i)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int ch = m0 + tc_row<BM>(i, 2 * h);
                    if (ch < cg) xp[(i64)ch * hw] = acc[i][j][2 * h + c];
                }
        }
}

// Entry points, written out (build.rs finds kernels by their `extern "C" __global__` text).
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) conv_fwd_tc_v1_128x128(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ y, ConvGeo G, int splits, i64 chunk) {
    conv_fwd_tc_body<128, 128>(x, w, bias, y, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) conv_bwd_input_tc_v1_128x128(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_input_tc_body<128, 128>(dy, w, dx, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) conv_fwd_tc_v1_64x128(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ y, ConvGeo G, int splits, i64 chunk) {
    conv_fwd_tc_body<64, 128>(x, w, bias, y, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) conv_bwd_input_tc_v1_64x128(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_input_tc_body<64, 128>(dy, w, dx, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) conv_fwd_tc_v1_64x64(
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ y, ConvGeo G, int splits, i64 chunk) {
    conv_fwd_tc_body<64, 64>(x, w, bias, y, G, splits, chunk);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) conv_bwd_input_tc_v1_64x64(
    const float* __restrict__ dy, const float* __restrict__ w, float* __restrict__ dx, ConvGeo G,
    int splits, i64 chunk) {
    conv_bwd_input_tc_body<64, 64>(dy, w, dx, G, splits, chunk);
}

// y[i] = x[i] rounded to bf16 by bf16_rne, as an fp32 bit pattern (low 16 bits zero): lets the
// tests compare the device rounding with a host implementation bit for bit.
extern "C" __global__ void bf16_round(const float* __restrict__ x, float* __restrict__ y, i64 n) {
    GRID_STRIDE(i, n) { y[i] = bf16_to_float(bf16_rne(x[i])); }
}

// One warp, one mma_bf16_16816: d (16×8) = c + a (16×16) · b (16×8), all row-major fp32 with
// the operands rounded to bf16. The fragments are built here from mma.cuh's layout comment,
// independently of the tiled kernels, so a test with exactly representable inputs checks that
// reading of the PTX layout on the hardware itself (and the emulator's model of it).
extern "C" __global__ void mma_probe(const float* __restrict__ a, const float* __restrict__ b,
                                     const float* __restrict__ c, float* __restrict__ d) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    auto pack = [](float lo, float hi) {
        return (unsigned)bf16_rne(lo) | ((unsigned)bf16_rne(hi) << 16);
    };
    unsigned af[4], bf[2];
    for (int r = 0; r < 4; ++r) {
        const int row = g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
        af[r] = pack(a[row * 16 + col], a[row * 16 + col + 1]);
    }
    for (int r = 0; r < 2; ++r) {
        const int k = 2 * t + 8 * r;
        bf[r] = pack(b[k * 8 + g], b[(k + 1) * 8 + g]);
    }
    float acc[4];
    for (int r = 0; r < 4; ++r) acc[r] = c[(g + 8 * (r >> 1)) * 8 + 2 * t + (r & 1)];
    mma_bf16_16816(acc, af, bf);
    for (int r = 0; r < 4; ++r) d[(g + 8 * (r >> 1)) * 8 + 2 * t + (r & 1)] = acc[r];
}
