// Three-pass safe softmax, storing exp(x - max) and reloading it to rescale.
//
// Reference (per row): m = max(x); e = exp(x - m) stored in y; d = sum(e); y = e / d.
// Bytes moved per element of storage size b: 3 reads (x for the max, x for exp, y for the rescale)
// + 2 writes (e, then y) = 5b, against the minimum 2b.
// Kernels, launched in order on a (rows, chunks) grid:
//   reload_max_*    partial max of each chunk
//   reload_exp_*    row max from the partials, y = exp(x - max), partial sum of the stored values
//   reload_scale_*  row sum from the partials, y *= 1 / sum
#include "softmax_common.cuh"

template <class D>
__device__ void reload_max(const typename D::storage* x, long long cols, long long chunk_cols, long long chunks,
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
__device__ void reload_exp(const typename D::storage* x, typename D::storage* y, long long cols,
                           long long chunk_cols, long long chunks, const float* partial_max, float* partial_sum) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    const float m = row_max_of_partials(partial_max, chunks, scratch);
    float d = 0.0f;
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        const long long i = chunk.row_offset + c;
        const float e = expf(D::load(x, i) - m);
        D::store(y, i, e);
        d += e;
    }
    d = block_sum(d, scratch);
    if (threadIdx.x == 0) partial_sum[partial_index(chunks)] = d;
}

template <class D>
__device__ void reload_scale(typename D::storage* y, long long cols, long long chunk_cols, long long chunks,
                             const float* partial_sum) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    float d = 0.0f;
    for (long long c = threadIdx.x; c < chunks; c += blockDim.x) d += partial_sum[(long long)blockIdx.x * chunks + c];
    const float inverse = 1.0f / block_sum(d, scratch);
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        const long long i = chunk.row_offset + c;
        D::store(y, i, D::load(y, i) * inverse);
    }
}

#define SOFTMAX_INSTANTIATE(D, SUFFIX)                                                                         \
    extern "C" __global__ void reload_max_##SUFFIX(const D::storage* x, long long cols, long long chunk_cols,    \
                                                   long long chunks, float* partial_max) {                     \
        reload_max<D>(x, cols, chunk_cols, chunks, partial_max);                                               \
    }                                                                                                          \
    extern "C" __global__ void reload_exp_##SUFFIX(const D::storage* x, D::storage* y, long long cols,          \
                                                   long long chunk_cols, long long chunks,                     \
                                                   const float* partial_max, float* partial_sum) {             \
        reload_exp<D>(x, y, cols, chunk_cols, chunks, partial_max, partial_sum);                               \
    }                                                                                                          \
    extern "C" __global__ void reload_scale_##SUFFIX(D::storage* y, long long cols, long long chunk_cols,       \
                                                     long long chunks, const float* partial_sum) {             \
        reload_scale<D>(y, cols, chunk_cols, chunks, partial_sum);                                             \
    }

SOFTMAX_INSTANTIATE(F32, f32)
SOFTMAX_INSTANTIATE(F16, f16)
SOFTMAX_INSTANTIATE(BF16, bf16)
