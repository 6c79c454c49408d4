// Batched matrix products C[z] = op(A)[z] · op(B)[z] in fp32 on the tiled main loop of
// tile.cuh, with the strided loaders of tile_gemm.cuh (layout and batching described there).

template <int BM, int BN, bool AK, bool BK>
__device__ __forceinline__ void gemm_body(const float* __restrict__ A, const float* __restrict__ B,
                                          float* __restrict__ C, i64 M, i64 N, i64 K, i64 a_rs,
                                          i64 a_cs, i64 b_rs, i64 b_cs, i64 nbatch,
                                          const Strided& batch) {
    const i64 m0 = (i64)blockIdx.y * BM, n0 = (i64)blockIdx.x * BN;
    for (i64 z = blockIdx.z; z < nbatch; z += gridDim.z) {
        i64 oa, ob;
        strided_offsets(batch, z, oa, ob);
        MatA<BM, AK> la{A + oa, M, a_rs, a_cs, m0};
        MatB<BN, BK> lb{B + ob, N, b_rs, b_cs, n0};
        float acc[BM / 16][BN / 16];
        mm_mainloop<BM, BN, AK, BK>(la, lb, 0, K, acc);
        float* Cz = C + z * M * N;
#pragma unroll
        for (int i = 0; i < BM / 16; ++i) {
            i64 m = m0 + mm_row<BM>(i);
            if (m >= M) continue;
#pragma unroll
            for (int j = 0; j < BN / 16; ++j) {
                i64 n = n0 + mm_col<BN>(j);
                if (n < N) Cz[m * N + n] = acc[i][j];
            }
        }
    }
}

// Names: gemm_<BM>x<BN>_<a><b>, a = n when A is K-contiguous (a_cs = 1) else t,
// b = n when B is N-contiguous (b_cs = 1) else t.
#define GEMM_PARAMS                                                                           \
    const float *__restrict__ A, const float *__restrict__ B, float *__restrict__ C, i64 M,     \
        i64 N, i64 K, i64 a_rs, i64 a_cs, i64 b_rs, i64 b_cs, i64 nbatch, Strided batch
#define GEMM_ARGS A, B, C, M, N, K, a_rs, a_cs, b_rs, b_cs, nbatch, batch

extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) gemm_128x128_nn(GEMM_PARAMS) {
    gemm_body<128, 128, true, false>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) gemm_128x128_nt(GEMM_PARAMS) {
    gemm_body<128, 128, true, true>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) gemm_128x128_tn(GEMM_PARAMS) {
    gemm_body<128, 128, false, false>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) gemm_128x128_tt(GEMM_PARAMS) {
    gemm_body<128, 128, false, true>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) gemm_64x128_nn(GEMM_PARAMS) {
    gemm_body<64, 128, true, false>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) gemm_64x128_nt(GEMM_PARAMS) {
    gemm_body<64, 128, true, true>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) gemm_64x128_tn(GEMM_PARAMS) {
    gemm_body<64, 128, false, false>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) gemm_64x128_tt(GEMM_PARAMS) {
    gemm_body<64, 128, false, true>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) gemm_64x64_nn(GEMM_PARAMS) {
    gemm_body<64, 64, true, false>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) gemm_64x64_nt(GEMM_PARAMS) {
    gemm_body<64, 64, true, true>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) gemm_64x64_tn(GEMM_PARAMS) {
    gemm_body<64, 64, false, false>(GEMM_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) gemm_64x64_tt(GEMM_PARAMS) {
    gemm_body<64, 64, false, true>(GEMM_ARGS);
}
