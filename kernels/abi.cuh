// The types passed by value between Rust and the kernels, defined here ONCE: build.rs parses
// this file and generates their Rust mirrors (#[repr(C)] structs, #[repr(i32)] enums) together
// with a layout check on both sides (const asserts in Rust, static_asserts appended to this
// prelude). First in the prelude (files are concatenated in name order).
// Parsed subset: `typedef`, `#define NAME INT`, `struct NAME { TYPE a, b[DIM]; };` and
// `enum NAME : int { A = 0, ... };`.

typedef long long i64;

#define MAXR 8

// Shape and two stride sets of a strided view (rank ≤ MAXR).
struct Strided {
    int rank;
    int pad_;
    i64 dims[MAXR];
    i64 sa[MAXR];
    i64 sb[MAXR];
};

// Geometry of a 2-D convolution (NCHW input, OIHW weights, groups).
struct ConvGeo {
    i64 n, c, h, w, o, kh, kw, oh, ow, stride, pad, groups;
};

// Sizes and (token stride, channel stride) of the fused attention's operands (attention.cu):
// q [l, d], k [s, d], v [s, dv], the output and its cotangent [l, dv], per batch entry.
struct AttnGeo {
    i64 l, s, d, dv, q_ts, q_cs, k_ts, k_cs, v_ts, v_cs, o_ts, o_cs;
};

// Element-wise unary op of unary_fwd / unary_bwd (elementwise.cu).
enum UnaryCode : int {
    U_NEG = 0,
    U_EXP = 1,
    U_SQRT = 2,
    U_SQUARE = 3,
    U_SILU = 4,
    U_GELU = 5,
    U_ELU = 6,
    U_LEAKY = 7,
    U_CLAMP = 8,
    U_AFFINE = 9,
    U_TANH = 10,
    U_SIGMOID = 11,
};

// Binary op of binary_same / binary_bcast (elementwise.cu).
enum BinaryCode : int {
    B_ADD = 0,
    B_SUB = 1,
    B_MUL = 2,
    B_DIV = 3,
};

// What one blur_pass computes (blur.cu): the Gaussian, its σ-derivative, or the adjoint.
enum BlurMode : int {
    MODE_G = 0,
    MODE_DG = 1,
    MODE_ADJ = 2,
};
