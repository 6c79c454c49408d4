// Data movement. Concat, slice, pad, permute, broadcast_to and pixel (un)shuffle are all one
// strided copy y[offB(i)] = x[offA(i)] with stride sets built on the host; roll has its own
// index map. Pad first fills the output with zeros (fill_zero) and then copies.

extern "C" __global__ void strided_copy(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                        Strided s) {
    GRID_STRIDE(i, n) {
        i64 src, dst;
        strided_offsets(s, i, src, dst);
        y[dst] = x[src];
    }
}

extern "C" __global__ void fill_zero(float* __restrict__ y, i64 n) {
    GRID_STRIDE(i, n) { y[i] = 0.0f; }
}

// torch.roll: y[i] = x[(i − shift) mod n] along each axis. s.dims = shape, s.sa = strides,
// s.sb = per-axis shift already reduced into [0, n).
extern "C" __global__ void roll(const float* __restrict__ x, float* __restrict__ y, i64 n,
                                Strided s) {
    GRID_STRIDE(i, n) {
        i64 rem = i, src = 0;
        for (int d = s.rank - 1; d >= 0; --d) {
            i64 len = s.dims[d];
            i64 q = rem / len;
            i64 idx = rem - q * len;
            i64 from = idx - s.sb[d];
            if (from < 0) from += len;
            src += from * s.sa[d];
            rem = q;
        }
        y[i] = x[src];
    }
}
