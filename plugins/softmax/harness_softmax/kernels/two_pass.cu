// Two-pass softmax of Dukhan and Ablavatski (2020, arXiv:2001.04438), as in XNNPACK's f32-softmax.
//
// Reference (per row): exp(x) = m * 2^n with n = round(x log2 e), m = exp(x - n ln 2) in [0.70, 1.42]; neither
// part can overflow, so sum(exp(x)) is accumulated as a (mantissa M, exponent E) pair without a max pass:
// adding (m, n) to (M, E) gives E' = max(E, n), M' = M 2^(E - E') + m 2^(n - E'). Output y = (m / M) 2^(n - E).
// Bytes moved per element of storage size b: 2 reads + 1 write = 3b, against the minimum 2b.
// Kernels, launched in order on a (rows, chunks) grid:
//   two_pass_sum_*  each thread accumulates its (M, E) pair; the block combines them into the chunk's pair
//   two_pass_out_*  the row's pair from the chunks' pairs, then the output
#include "softmax_common.cuh"

__device__ __forceinline__ float reduce_range(float x, float* n) {
    *n = rintf(x * SOFTMAX_LOG2E);
    return expf((x - *n * SOFTMAX_LN2_HI) - *n * SOFTMAX_LN2_LO);
}

// Combine every thread's (mantissa, exponent) into the block's: the largest exponent, then the aligned sum.
__device__ __forceinline__ void block_combine(float* mantissa, float* exponent, float* scratch) {
    const float e = block_max(*exponent, scratch);
    *mantissa = block_sum(*mantissa * exp2f(*exponent - e), scratch);
    *exponent = e;
}

template <class D>
__device__ void two_pass_sum(const typename D::storage* x, long long cols, long long chunk_cols, long long chunks,
                             float* partial_mantissa, float* partial_exponent) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    float sum_m = 0.0f, sum_e = SOFTMAX_NEG_MAX;
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        float n;
        const float m = reduce_range(D::load(x, chunk.row_offset + c), &n);
        const float e = fmaxf(sum_e, n);
        sum_m = sum_m * exp2f(sum_e - e) + m * exp2f(n - e);
        sum_e = e;
    }
    block_combine(&sum_m, &sum_e, scratch);
    if (threadIdx.x == 0) {
        partial_mantissa[partial_index(chunks)] = sum_m;
        partial_exponent[partial_index(chunks)] = sum_e;
    }
}

template <class D>
__device__ void two_pass_out(const typename D::storage* x, typename D::storage* y, long long cols,
                             long long chunk_cols, long long chunks, const float* partial_mantissa,
                             const float* partial_exponent) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    float sum_m = 0.0f, sum_e = SOFTMAX_NEG_MAX;
    for (long long c = threadIdx.x; c < chunks; c += blockDim.x) {
        const long long p = (long long)blockIdx.x * chunks + c;
        const float e = fmaxf(sum_e, partial_exponent[p]);
        sum_m = sum_m * exp2f(sum_e - e) + partial_mantissa[p] * exp2f(partial_exponent[p] - e);
        sum_e = e;
    }
    block_combine(&sum_m, &sum_e, scratch);
    const float inverse = 1.0f / sum_m;
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        const long long i = chunk.row_offset + c;
        float n;
        const float m = reduce_range(D::load(x, i), &n);
        D::store(y, i, ldexpf(m * inverse, (int)(n - sum_e)));
    }
}

#define SOFTMAX_INSTANTIATE(D, SUFFIX)                                                                         \
    extern "C" __global__ void two_pass_sum_##SUFFIX(const D::storage* x, long long cols, long long chunk_cols,  \
                                                     long long chunks, float* partial_mantissa,                \
                                                     float* partial_exponent) {                                \
        two_pass_sum<D>(x, cols, chunk_cols, chunks, partial_mantissa, partial_exponent);                      \
    }                                                                                                          \
    extern "C" __global__ void two_pass_out_##SUFFIX(const D::storage* x, D::storage* y, long long cols,        \
                                                     long long chunk_cols, long long chunks,                   \
                                                     const float* partial_mantissa,                            \
                                                     const float* partial_exponent) {                          \
        two_pass_out<D>(x, y, cols, chunk_cols, chunks, partial_mantissa, partial_exponent);                   \
    }

SOFTMAX_INSTANTIATE(F32, f32)
SOFTMAX_INSTANTIATE(F16, f16)
SOFTMAX_INSTANTIATE(BF16, bf16)
