// Strided matrix loaders shared by the fp32 products (gemm.cu) and the bf16 tensor-core ones
// (gemm_tc.cu). op(A) is M×K with element (m, k) at A[m·a_rs + k·a_cs]; op(B) is K×N with
// (k, n) at B[k·b_rs + n·b_cs]; transposes are just strides. Batch z's matrix offsets come
// from a Strided `batch` (dims = batch shape, sa/sb = element offsets per batch index, 0 where
// broadcast); C is contiguous [z][M][N]. The thread→element map (tile.cuh) matches the
// contiguous axis: K-fast for a row-major A, M-fast for a transposed one (likewise N/K for
// B), so loads coalesce.

template <int BM, bool KF>
struct MatA {
    const float* p;
    i64 M, rs, cs, m0;
    template <int N>
    __device__ __forceinline__ void load(i64 k0, i64 ke, float (&r)[N]) const {
#pragma unroll
        for (int e = 0; e < N; ++e) {
            i64 k = k0 + mm_k<KF, BM>(e);
            i64 m = m0 + mm_x<KF, BM>(e);
            r[e] = (k < ke && m < M) ? p[m * rs + k * cs] : 0.0f;
        }
    }
};

template <int BN, bool KF>
struct MatB {
    const float* p;
    i64 N, rs, cs, n0;
    template <int NN>
    __device__ __forceinline__ void load(i64 k0, i64 ke, float (&r)[NN]) const {
#pragma unroll
        for (int e = 0; e < NN; ++e) {
            i64 k = k0 + mm_k<KF, BN>(e);
            i64 n = n0 + mm_x<KF, BN>(e);
            r[e] = (k < ke && n < N) ? p[k * rs + n * cs] : 0.0f;
        }
    }
};
