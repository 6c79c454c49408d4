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
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct emu_uint3 { unsigned x, y, z; };
static emu_uint3 threadIdx, blockIdx, blockDim, gridDim;

struct float4 { float x, y, z, w; };

static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }

void emu_block_barrier();
void emu_warp_barrier();
double* emu_warp_slots();  // 32 slots of the calling thread's warp

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
