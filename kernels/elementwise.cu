// Element-wise ops: unary forward/backward, binary with broadcasting through stride arrays,
// fills, and sums over axes (sum_to and reduce). Reductions accumulate in double so that
// large sums agree with the f64-accumulating CPU reference independent of order.

// Op codes: UnaryCode and BinaryCode in abi.cuh (shared with Rust).

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ float unary_f(int op, float x, float a, float b) {
    switch (op) {
    case U_NEG: return -x;
    case U_EXP: return expf(x);
    case U_SQRT: return sqrtf(x);
    case U_SQUARE: return x * x;
    case U_SILU: return x * sigm(x);
    case U_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case U_ELU: return x > 0.0f ? x : a * (expf(x) - 1.0f);
    case U_LEAKY: return x > 0.0f ? x : a * x;
    case U_CLAMP: return fminf(fmaxf(x, a), b);
    case U_AFFINE: return a * x + b;
    case U_TANH: return tanhf(x);
    case U_SIGMOID: return sigm(x);
    }
    return __int_as_float(0x7fc00000);
}

__device__ __forceinline__ float unary_df(int op, float x, float a, float b) {
    switch (op) {
    case U_NEG: return -1.0f;
    case U_EXP: return expf(x);
    case U_SQRT: return 0.5f / sqrtf(x);
    case U_SQUARE: return 2.0f * x;
    case U_SILU: {
        float s = sigm(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case U_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = expf(-(x * x) * 0.5f) * 0.39894228040143268f;
        return cdf + x * pdf;
    }
    case U_ELU: return x > 0.0f ? 1.0f : a * expf(x);
    case U_LEAKY: return x > 0.0f ? 1.0f : a;
    case U_CLAMP: return (x > a && x < b) ? 1.0f : 0.0f;
    case U_AFFINE: return a;
    case U_TANH: {
        float t = tanhf(x);
        return 1.0f - t * t;
    }
    case U_SIGMOID: {
        float s = sigm(x);
        return s * (1.0f - s);
    }
    }
    return __int_as_float(0x7fc00000);
}

extern "C" __global__ void unary_fwd(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                     UnaryCode op, float a, float b) {
    GRID_STRIDE(i, n) { y[i] = unary_f(op, x[i], a, b); }
}

extern "C" __global__ void unary_bwd(const float* __restrict__ x, const float* __restrict__ dy,
                                     float* __restrict__ dx, i64 n, UnaryCode op, float a, float b) {
    GRID_STRIDE(i, n) { dx[i] = dy[i] * unary_df(op, x[i], a, b); }
}

__device__ __forceinline__ float bin(int op, float p, float q) {
    switch (op) {
    case B_ADD: return p + q;
    case B_SUB: return p - q;
    case B_MUL: return p * q;
    case B_DIV: return p / q;
    }
    return __int_as_float(0x7fc00000);
}

// Same shapes: a flat loop.
extern "C" __global__ void binary_same(const float* __restrict__ a, const float* __restrict__ b,
                                       float* __restrict__ y, i64 n, BinaryCode op) {
    GRID_STRIDE(i, n) { y[i] = bin(op, a[i], b[i]); }
}

// Broadcasting: s.dims is the output shape, s.sa / s.sb the operands' strides in it (0 along
// broadcast axes).
extern "C" __global__ void binary_bcast(const float* __restrict__ a, const float* __restrict__ b,
                                        float* __restrict__ y, i64 n, BinaryCode op, Strided s) {
    GRID_STRIDE(i, n) {
        i64 oa, ob;
        strided_offsets(s, i, oa, ob);
        y[i] = bin(op, a[oa], b[ob]);
    }
}

extern "C" __global__ void fill_value(float* __restrict__ y, i64 n, float v) {
    GRID_STRIDE(i, n) { y[i] = v; }
}

// A device-to-device copy as a kernel (not cuMemcpy): it records into graph captures like
// every other launch and runs on the emulator.
extern "C" __global__ void copy_values(const float* __restrict__ x, float* __restrict__ y, i64 n) {
    GRID_STRIDE(i, n) { y[i] = x[i]; }
}

// y[o] = scale · Σ over the reduced index set of x. `kept` maps an output index to the base
// offset (dims = kept axes, sa = their strides); `red` enumerates the reduced axes. One block
// per output: for large reductions (bias gradients, whole-image losses).
extern "C" __global__ void reduce_block(const float* __restrict__ x, float* __restrict__ y,
                                        i64 nout, Strided kept, Strided red, i64 count,
                                        double scale) {
    __shared__ double sh[32];
    for (i64 o = blockIdx.x; o < nout; o += gridDim.x) {
        i64 base, unused;
        strided_offsets(kept, o, base, unused);
        double acc = 0.0;
        for (i64 j = threadIdx.x; j < count; j += blockDim.x) {
            i64 off, u2;
            strided_offsets(red, j, off, u2);
            acc += (double)x[base + off];
        }
        acc = block_sum_d(acc, sh);
        if (threadIdx.x == 0) y[o] = (float)(acc * scale);
    }
}

// Same, one thread per output: for many short reductions.
extern "C" __global__ void reduce_thread(const float* __restrict__ x, float* __restrict__ y,
                                         i64 nout, Strided kept, Strided red, i64 count,
                                         double scale) {
    GRID_STRIDE(o, nout) {
        i64 base, unused;
        strided_offsets(kept, o, base, unused);
        double acc = 0.0;
        for (i64 j = 0; j < count; ++j) {
            i64 off, u2;
            strided_offsets(red, j, off, u2);
            acc += (double)x[base + off];
        }
        y[o] = (float)(acc * scale);
    }
}
