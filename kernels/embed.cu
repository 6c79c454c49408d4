// Sinusoidal timestep embedding, cos first: y[b, i] = cos(t_b·f_i), y[b, half+i] = sin(t_b·f_i),
// f_i = exp(−ln(max_period)·i/half) as PyTorch computes it (the exponent by an f32 multiply
// and divide, exp rounded to f32: backend/cpu/embed.rs says why); the product and the
// trigonometry in double, as the CPU reference.
extern "C" __global__ void timestep_embedding(const float* __restrict__ t, float* __restrict__ y,
                                              i64 batch, i64 dim, double log_max_period) {
    i64 half = dim / 2;
    GRID_STRIDE(idx, batch * half) {
        i64 b = idx / half, i = idx - b * half;
        float v = (float)(-log_max_period) * (float)i / (float)half;
        float f = (float)exp((double)v);
        double arg = (double)t[b] * (double)f;
        y[b * dim + i] = (float)cos(arg);
        y[b * dim + half + i] = (float)sin(arg);
    }
}
