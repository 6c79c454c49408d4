// Host emulation of the CUDA C subset used by kernels/*.cu, so the very same kernel sources
// run on the CPU (tests without a GPU). Each block runs as 1 OS thread with one fiber
// (ucontext) per CUDA thread; fibers switch only at barriers (__syncthreads, __syncwarp,
// warp shuffles), which is enough to execute barrier-correct kernels exactly and to expose
// reads that a missing barrier would leave unordered. Blocks run one after another, so
// `__shared__` variables can be function-static.
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <utility>
#include <type_traits>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
// Kernel parameters are plain host arguments here; the qualifier only matters to ptxas.
#define __grid_constant__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct emu_uint3 { unsigned x, y, z; };
static emu_uint3 threadIdx, blockIdx, blockDim, gridDim;

struct float4 { float x, y, z, w; };

static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }

void emu_block_barrier();
void emu_warp_barrier();
double* emu_warp_slots();  // 32 slots of the calling thread's warp
unsigned* emu_warp_words();  // 32 × 6 words of the calling thread's warp (mma fragments)

static inline void __syncthreads() { emu_block_barrier(); }
static inline void __syncwarp() { emu_warp_barrier(); }

template <class T>
static inline T __shfl_xor_sync(unsigned, T v, int o) {
    double* s = emu_warp_slots();
    unsigned lane = threadIdx.x & 31;
    s[lane] = (double)v;
    emu_warp_barrier();
    T r = (T)s[lane ^ (unsigned)o];
    emu_warp_barrier();
    return r;
}

// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 as a warp collective (kernels/mma.cuh has the
// fragment layout): every lane publishes its A and B registers, the warp meets, each lane
// computes its own four D elements from the whole 16×16 · 16×8 product, the warp meets again
// before anyone may publish the next fragments. The products of two bf16 are exact in fp32;
// they are summed in k order with fmaf (the hardware's order and internal precision differ,
// which the tests' fp32-accumulation bounds allow for).
#define DYNFACE_EMU_MMA 1
static inline float emu_bf16_half(unsigned word, int hi) {
    return __uint_as_float(hi ? (word & 0xffff0000u) : (word << 16));
}
static inline void mma_bf16_16816(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    unsigned* s = emu_warp_words();
    const unsigned lane = threadIdx.x & 31;
    for (int i = 0; i < 4; ++i) s[lane * 6 + i] = a[i];
    s[lane * 6 + 4] = b[0];
    s[lane * 6 + 5] = b[1];
    emu_warp_barrier();
    const int g = (int)lane >> 2, t = (int)lane & 3;
    for (int r = 0; r < 4; ++r) {
        const int row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
        float acc = d[r];
        for (int k = 0; k < 16; ++k) {
            // A[row][k]: lane (row % 8)·4 + (k % 8) / 2, register (row ≥ 8) + 2·(k ≥ 8).
            const unsigned la = (unsigned)((row & 7) * 4 + ((k & 7) >> 1));
            const float av = emu_bf16_half(s[la * 6 + (row >> 3) + 2 * (k >> 3)], k & 1);
            // B[k][col]: lane col·4 + (k % 8) / 2, register 4 + (k ≥ 8).
            const unsigned lb = (unsigned)(col * 4 + ((k & 7) >> 1));
            const float bv = emu_bf16_half(s[lb * 6 + 4 + (k >> 3)], k & 1);
            acc = fmaf(av, bv, acc);
        }
        d[r] = acc;
    }
    emu_warp_barrier();
}
