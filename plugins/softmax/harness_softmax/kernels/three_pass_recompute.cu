// Three-pass safe softmax, recomputing exp in the output pass.
//
// Reference (per row): m = max(x); d = sum(exp(x - m)); y = exp(x - m) / d.
// Bytes moved per element of storage size b: 3 reads (max, sum, output passes) + 1 write = 4b;
// the minimum any softmax needs is 2b, so this algorithm can reach at most half the copy bandwidth.
// Kernels, launched in order on a (rows, chunks) grid:
//   recompute_max_*  partial max of each chunk
//   recompute_sum_*  row max from the partials, partial sum of exp(x - max) of each chunk
//   recompute_out_*  row max and sum from the partials, y = exp(x - max) / sum
#include "softmax_common.cuh"

template <class D>
__device__ void recompute_max(const typename D::storage* x, long long cols, long long chunk_cols, long long chunks,
                              float* partial_max) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    float m = SOFTMAX_NEG_MAX;
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        m = fmaxf(m, D::load(x, chunk.row_offset + c));
    }
    m = block_max(m, scratch);
    if (threadIdx.x == 0) partial_max[partial_index(chunks)] = m;
}

template <class D>
__device__ void recompute_sum(const typename D::storage* x, long long cols, long long chunk_cols, long long chunks,
                              const float* partial_max, float* partial_sum) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    const float m = row_max_of_partials(partial_max, chunks, scratch);
    float d = 0.0f;
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        d += expf(D::load(x, chunk.row_offset + c) - m);
    }
    d = block_sum(d, scratch);
    if (threadIdx.x == 0) partial_sum[partial_index(chunks)] = d;
}

template <class D>
__device__ void recompute_out(const typename D::storage* x, typename D::storage* y, long long cols,
                              long long chunk_cols, long long chunks, const float* partial_max,
                              const float* partial_sum) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    const float m = row_max_of_partials(partial_max, chunks, scratch);
    float d = 0.0f;
    for (long long c = threadIdx.x; c < chunks; c += blockDim.x) d += partial_sum[(long long)blockIdx.x * chunks + c];
    const float inverse = 1.0f / block_sum(d, scratch);
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        const long long i = chunk.row_offset + c;
        D::store(y, i, expf(D::load(x, i) - m) * inverse);
    }
}

#define SOFTMAX_INSTANTIATE(D, SUFFIX)                                                                         \
    extern "C" __global__ void recompute_max_##SUFFIX(const D::storage* x, long long cols, long long chunk_cols, \
                                                      long long chunks, float* partial_max) {                  \
        recompute_max<D>(x, cols, chunk_cols, chunks, partial_max);                                            \
    }                                                                                                          \
    extern "C" __global__ void recompute_sum_##SUFFIX(const D::storage* x, long long cols, long long chunk_cols, \
                                                      long long chunks, const float* partial_max,              \
                                                      float* partial_sum) {                                    \
        recompute_sum<D>(x, cols, chunk_cols, chunks, partial_max, partial_sum);                               \
    }                                                                                                          \
    extern "C" __global__ void recompute_out_##SUFFIX(const D::storage* x, D::storage* y, long long cols,       \
                                                      long long chunk_cols, long long chunks,                  \
                                                      const float* partial_max, const float* partial_sum) {    \
        recompute_out<D>(x, y, cols, chunk_cols, chunks, partial_max, partial_sum);                            \
    }

SOFTMAX_INSTANTIATE(F32, f32)
SOFTMAX_INSTANTIATE(F16, f16)
SOFTMAX_INSTANTIATE(BF16, bf16)
