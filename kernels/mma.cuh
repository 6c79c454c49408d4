// bf16 tensor-core primitives: fp32 → bf16 rounding and the one warp-wide matrix
// multiply-accumulate the tc kernels use. Header-free (NVRTC ships no cuda_bf16.h): a bf16
// is the high half of an fp32 bit pattern, kept in an unsigned short.

// fp32 → bf16, round to nearest, ties to even. NaN stays NaN (sign and high payload bits
// kept, quiet bit set: adding the rounding bias could carry a NaN into infinity); ±inf and
// values that round past the largest finite bf16 become ±inf; subnormals round like the rest.
__device__ __forceinline__ unsigned short bf16_rne(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

__device__ __forceinline__ float bf16_to_float(unsigned short h) {
    return __uint_as_float((unsigned)h << 16);
}

// D (16×8, fp32) += A (16×16, bf16, row-major) · B (16×8, bf16, column-major) for one warp,
// all 32 lanes together (every lane must call it). With g = lane / 4 and t = lane % 4, a lane
// holds (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"; in each
// 32-bit register the element of lower index is in the low half):
//   a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//   a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//   d[0], d[1] = D[g][2t, 2t+1]   d[2], d[3] = D[g+8][2t, 2t+1]
// The CUDA emulator (backend/cuda/emu/shim.hpp) defines DYNFACE_EMU_MMA and its own
// warp-collective version of this function with the same layout.
#ifndef DYNFACE_EMU_MMA
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const unsigned (&a)[4],
                                               const unsigned (&b)[2]) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    // bf16 mma needs sm_80+; the backend refuses Precision::Bf16 on older devices, and this
    // keeps the file compiling for them (preload_all compiles every file).
    __trap();
#endif
}
#endif
