// Nearest ×2 upsampling and its adjoint, the 2×2 block sum (×¼ of it is average pooling).

// x [planes, h, w] → y [planes, 2h, 2w]
extern "C" __global__ void upsample2x(const float* __restrict__ x, float* __restrict__ y,
                                      i64 planes, i64 h, i64 w) {
    i64 ow = 2 * w, per = 4 * h * w;
    GRID_STRIDE(i, planes * per) {
        i64 p = i / per, r = i - p * per;
        i64 oy = r / ow, ox = r - oy * ow;
        y[i] = x[p * h * w + (oy >> 1) * w + (ox >> 1)];
    }
}

// x [planes, h, w] → y [planes, h/2, w/2] (floor, as the CPU reference).
extern "C" __global__ void sum_pool2x(const float* __restrict__ x, float* __restrict__ y,
                                      i64 planes, i64 h, i64 w) {
    i64 oh = h / 2, ow = w / 2, per = oh * ow;
    GRID_STRIDE(i, planes * per) {
        i64 p = i / per, r = i - p * per;
        i64 oy = r / ow, ox = r - oy * ow;
        const float* s = x + p * h * w + (2 * oy) * w + 2 * ox;
        float a = s[0] + s[1];
        float b = s[w] + s[w + 1];
        y[i] = a + b;
    }
}
