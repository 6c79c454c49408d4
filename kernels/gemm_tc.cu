// Batched matrix products on bf16 tensor cores (v1): gemm.cu's products (same loaders, layout,
// batching and launch grid, tile_gemm.cuh) on tile_tc.cuh's main loop. Storage stays fp32;
// operands are rounded to bf16 (nearest-even) as they are staged; accumulation is fp32.
// Names: gemm_tc_v1_<BM>x<BN>_<a><b> with a, b as in gemm.cu.

template <int BM, int BN, bool AK, bool BK>
__device__ __forceinline__ void gemm_tc_body(const float* __restrict__ A,
                                             const float* __restrict__ B, float* __restrict__ C,
                                             i64 M, i64 N, i64 K, i64 a_rs, i64 a_cs, i64 b_rs,
                                             i64 b_cs, i64 nbatch, const Strided& batch) {
    const i64 m0 = (i64)blockIdx.y * BM, n0 = (i64)blockIdx.x * BN;
    for (i64 z = blockIdx.z; z < nbatch; z += gridDim.z) {
        i64 oa, ob;
        strided_offsets(batch, z, oa, ob);
        MatA<BM, AK> la{A + oa, M, a_rs, a_cs, m0};
        MatB<BN, BK> lb{B + ob, N, b_rs, b_cs, n0};
        float acc[BM / 32][BN / 32][4];
        tc_mainloop<BM, BN, AK, BK>(la, lb, 0, K, acc);
        float* Cz = C + z * M * N;
#pragma unroll
        for (int i = 0; i < BM / 32; ++i)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const i64 m = m0 + tc_row<BM>(i, 2 * h);
                if (m >= M) continue;
#pragma unroll
                for (int j = 0; j < BN / 32; ++j)
#pragma unroll
                    for (int c = 0; c < 2; ++c) {
                        const i64 n = n0 + tc_col<BN>(j, c);
                        if (n < N) Cz[m * N + n] = acc[i][j][2 * h + c];
                    }
            }
    }
}

#define GEMM_TC_PARAMS                                                                        \
    const float *__restrict__ A, const float *__restrict__ B, float *__restrict__ C, i64 M,     \
        i64 N, i64 K, i64 a_rs, i64 a_cs, i64 b_rs, i64 b_cs, i64 nbatch, Strided batch
#define GEMM_TC_ARGS A, B, C, M, N, K, a_rs, a_cs, b_rs, b_cs, nbatch, batch

extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) gemm_tc_v1_128x128_nn(GEMM_TC_PARAMS) {
    gemm_tc_body<128, 128, true, false>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) gemm_tc_v1_128x128_nt(GEMM_TC_PARAMS) {
    gemm_tc_body<128, 128, true, true>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) gemm_tc_v1_128x128_tn(GEMM_TC_PARAMS) {
    gemm_tc_body<128, 128, false, false>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_128x128) gemm_tc_v1_128x128_tt(GEMM_TC_PARAMS) {
    gemm_tc_body<128, 128, false, true>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) gemm_tc_v1_64x128_nn(GEMM_TC_PARAMS) {
    gemm_tc_body<64, 128, true, false>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) gemm_tc_v1_64x128_nt(GEMM_TC_PARAMS) {
    gemm_tc_body<64, 128, true, true>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) gemm_tc_v1_64x128_tn(GEMM_TC_PARAMS) {
    gemm_tc_body<64, 128, false, false>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x128) gemm_tc_v1_64x128_tt(GEMM_TC_PARAMS) {
    gemm_tc_body<64, 128, false, true>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) gemm_tc_v1_64x64_nn(GEMM_TC_PARAMS) {
    gemm_tc_body<64, 64, true, false>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) gemm_tc_v1_64x64_nt(GEMM_TC_PARAMS) {
    gemm_tc_body<64, 64, true, true>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) gemm_tc_v1_64x64_tn(GEMM_TC_PARAMS) {
    gemm_tc_body<64, 64, false, false>(GEMM_TC_ARGS);
}
extern "C" __global__ void __launch_bounds__(MM_THREADS, MM_MINB_64x64) gemm_tc_v1_64x64_tt(GEMM_TC_PARAMS) {
    gemm_tc_body<64, 64, false, true>(GEMM_TC_ARGS);
}
