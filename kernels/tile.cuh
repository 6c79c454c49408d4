// The register-tiled matrix-product main loop shared by gemm.cu and conv.cu.
//
// A block of 256 threads computes a BM×BN tile of C = A·B over K in steps of BK = 16, with
// A and B tiles double-buffered in shared memory and the next tile's global loads issued
// before the current tile's arithmetic. Each thread owns a (BM/16)×(BN/16) sub-tile, split
// into 4-wide strips 64 apart so that warps read shared memory as consecutive float4s.
//
// What A and B are is up to a loader object (plain strided matrices for gemm, implicit
// im2col gathers for convolution: no column buffer is ever built). A loader fetches the
// thread's share of one BK-deep tile into registers; which elements that is follows one of
// two fixed thread→element maps, so the loader can hoist per-thread index arithmetic:
//   KFAST: element j ↔ (k = tid & 15, x = (tid >> 4) + 16·j)      (thread's k is fixed)
//   XFAST: element j ↔ (k = tid / D + j·(256 / D), x = tid % D)  (thread's row/column fixed)
// where x is the M index for A (D = BM) and the N index for B (D = BN).

#define MM_THREADS 256
#define MM_BK 16

template <int BM, int BN, bool A_KFAST, bool B_KFAST, class LA, class LB>
__device__ __forceinline__ void mm_mainloop(const LA& la, const LB& lb, i64 kb, i64 ke,
                                            float (&acc)[BM / 16][BN / 16]) {
    const int TM = BM / 16, TN = BN / 16;
    __shared__ __align__(16) float As[2][MM_BK][BM + 4];
    __shared__ __align__(16) float Bs[2][MM_BK][BN + 4];
    const int tid = threadIdx.x;
    const int tx = tid & 15, ty = tid >> 4;
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    if (ke <= kb) return;

    float ra[TM], rb[TN];
    auto store = [&](int buf) {
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            int k = A_KFAST ? (tid & 15) : (tid / BM + i * (MM_THREADS / BM));
            int m = A_KFAST ? ((tid >> 4) + 16 * i) : (tid % BM);
            As[buf][k][m] = ra[i];
        }
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            int k = B_KFAST ? (tid & 15) : (tid / BN + j * (MM_THREADS / BN));
            int n = B_KFAST ? ((tid >> 4) + 16 * j) : (tid % BN);
            Bs[buf][k][n] = rb[j];
        }
    };

    la.load(kb, ke, ra);
    lb.load(kb, ke, rb);
    store(0);
    __syncthreads();
    int buf = 0;
    for (i64 k0 = kb; k0 < ke; k0 += MM_BK) {
        const bool more = k0 + MM_BK < ke;
        if (more) {
            la.load(k0 + MM_BK, ke, ra);
            lb.load(k0 + MM_BK, ke, rb);
        }
#pragma unroll
        for (int kk = 0; kk < MM_BK; ++kk) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM / 4; ++i) {
                float4 v = *reinterpret_cast<const float4*>(&As[buf][kk][i * 64 + ty * 4]);
                a[4 * i] = v.x;
                a[4 * i + 1] = v.y;
                a[4 * i + 2] = v.z;
                a[4 * i + 3] = v.w;
            }
#pragma unroll
            for (int j = 0; j < TN / 4; ++j) {
                float4 v = *reinterpret_cast<const float4*>(&Bs[buf][kk][j * 64 + tx * 4]);
                b[4 * j] = v.x;
                b[4 * j + 1] = v.y;
                b[4 * j + 2] = v.z;
                b[4 * j + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (more) store(buf ^ 1);
        __syncthreads();
        buf ^= 1;
    }
}

// Tile-local row / column of a thread's accumulator (i, j).
template <int BM>
__device__ __forceinline__ int mm_row(int i) {
    return (i >> 2) * 64 + (threadIdx.x >> 4) * 4 + (i & 3);
}
template <int BN>
__device__ __forceinline__ int mm_col(int j) {
    return (j >> 2) * 64 + (threadIdx.x & 15) * 4 + (j & 3);
}

// The k index of a loader's element `e` of the tile starting at k0, for either map.
template <bool KFAST, int D>
__device__ __forceinline__ int mm_k(int e) {
    return KFAST ? (threadIdx.x & 15) : ((int)threadIdx.x / D + e * (MM_THREADS / D));
}
template <bool KFAST, int D>
__device__ __forceinline__ int mm_x(int e) {
    return KFAST ? (((int)threadIdx.x >> 4) + 16 * e) : ((int)threadIdx.x % D);
}

// Blocks per SM each tile shape is compiled for (caps registers at 65536 / (256 · minb)):
// 128×128 needs ~180 registers (at 128 it spills), so one block; the smaller tiles fit two.
#define MM_MINB_128x128 1
#define MM_MINB_64x128 2
#define MM_MINB_64x64 2
