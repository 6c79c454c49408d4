// The bf16 tensor-core main loop (v1): C (BM×BN, fp32) = A (BM×K) · B (K×N) with A and B read
// as fp32 by the same loader objects as tile.cuh's mm_mainloop (either thread→element map,
// 16 of K per loader call), rounded to bf16 (mma.cuh's bf16_rne) when staged in shared memory,
// multiplied with mma_bf16_16816 and accumulated in fp32.
//
// 256 threads = 8 warps in a 2 (M) × 4 (N) grid; a warp owns a (BM/2)×(BN/4) sub-tile, i.e.
// MI = BM/32 row blocks of 16 times NJ = BN/32 column blocks of 8 mma tiles. One stage covers
// TC_BK = 32 of K (two loader calls, two mma k-steps), double-buffered in shared memory with
// the next stage's global loads in flight during the current stage's arithmetic.
//
// Shared layout: one 32-bit word per (k pair, row) — exactly a fragment register: word
// [kp][m] holds A[m][2kp] (low half) and A[m][2kp+1] (high half); likewise [kp][n] for B.
// Rows are padded by TC_PAD words so the fragment reads (lanes g = 0..7 along M or N, t = 0..3
// along k pairs) hit 32 distinct banks.

#define TC_BK 32
#define TC_PAD 8

template <int BM, int BN, bool A_KFAST, bool B_KFAST, class LA, class LB>
__device__ __forceinline__ void tc_mainloop(const LA& la, const LB& lb, i64 kb, i64 ke,
                                            float (&acc)[BM / 32][BN / 32][4]) {
    const int MI = BM / 32, NJ = BN / 32;
    const int TM = BM / 16, TN = BN / 16;  // loader elements per thread per 16 of K
    __shared__ __align__(16) unsigned As[2][TC_BK / 2][BM + TC_PAD];
    __shared__ __align__(16) unsigned Bs[2][TC_BK / 2][BN + TC_PAD];
    const int tid = threadIdx.x;
    const int lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * (BM / 2), wn = (warp & 3) * (BN / 4);
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.0f;
    if (ke <= kb) return;

    float ra[2][TM], rb[2][TN];
    auto load = [&](i64 k0) {
#pragma unroll
        for (int s = 0; s < 2; ++s) {
            la.load(k0 + 16 * s, ke, ra[s]);
            lb.load(k0 + 16 * s, ke, rb[s]);
        }
    };
    // Element (k, x) of a stage goes to half (k & 1) of word [k >> 1][x].
    auto store = [&](int buf) {
        unsigned short* a16 = reinterpret_cast<unsigned short*>(&As[buf][0][0]);
        unsigned short* b16 = reinterpret_cast<unsigned short*>(&Bs[buf][0][0]);
#pragma unroll
        for (int s = 0; s < 2; ++s) {
#pragma unroll
            for (int i = 0; i < TM; ++i) {
                int k = 16 * s + mm_k<A_KFAST, BM>(i);
                int m = mm_x<A_KFAST, BM>(i);
                a16[((k >> 1) * (BM + TC_PAD) + m) * 2 + (k & 1)] = bf16_rne(ra[s][i]);
            }
#pragma unroll
            for (int j = 0; j < TN; ++j) {
                int k = 16 * s + mm_k<B_KFAST, BN>(j);
                int n = mm_x<B_KFAST, BN>(j);
                b16[((k >> 1) * (BN + TC_PAD) + n) * 2 + (k & 1)] = bf16_rne(rb[s][j]);
            }
        }
    };

    load(kb);
    store(0);
    __syncthreads();
    int buf = 0;
    for (i64 k0 = kb; k0 < ke; k0 += TC_BK) {
        const bool more = k0 + TC_BK < ke;
        if (more) load(k0 + TC_BK);
#pragma unroll
        for (int kk = 0; kk < TC_BK / 16; ++kk) {
            const int kp = kk * 8 + t;
            unsigned a[MI][4], b[NJ][2];
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                const int m = wm + i * 16 + g;
                a[i][0] = As[buf][kp][m];
                a[i][1] = As[buf][kp][m + 8];
                a[i][2] = As[buf][kp + 4][m];
                a[i][3] = As[buf][kp + 4][m + 8];
            }
#pragma unroll
            for (int j = 0; j < NJ; ++j) {
                const int n = wn + j * 8 + g;
                b[j][0] = Bs[buf][kp][n];
                b[j][1] = Bs[buf][kp + 4][n];
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NJ; ++j) mma_bf16_16816(acc[i][j], a[i], b[j]);
        }
        if (more) store(buf ^ 1);
        __syncthreads();
        buf ^= 1;
    }
}

// Tile-local row and column of accumulator element acc[i][j][r] of the calling thread.
template <int BM>
__device__ __forceinline__ int tc_row(int i, int r) {
    const int warp = (int)threadIdx.x >> 5, g = ((int)threadIdx.x & 31) >> 2;
    return (warp >> 2) * (BM / 2) + i * 16 + g + (r >> 1) * 8;
}
template <int BN>
__device__ __forceinline__ int tc_col(int j, int r) {
    const int warp = (int)threadIdx.x >> 5, t = (int)threadIdx.x & 3;
    return (warp & 3) * (BN / 4) + j * 8 + 2 * t + (r & 1);
}
