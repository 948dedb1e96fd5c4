// Online softmax of Milakov and Gimelshein (2018, arXiv:1805.02867).
//
// Reference (per row): one pass keeps a running max m and d = sum(exp(x - m)); when x raises the max,
// d is rescaled: d' = d exp(m - x) + 1. Partial (m, d) pairs combine as m' = max(m1, m2),
// d' = d1 exp(m1 - m') + d2 exp(m2 - m'). Output y = exp(x - m) / d.
// Bytes moved per element of storage size b: 2 reads + 1 write = 3b, against the minimum 2b.
// Kernels, launched in order on a (rows, chunks) grid:
//   online_stats_*  each thread's running (m, d); the block combines them into the chunk's pair
//   online_out_*    the row's (m, d) from the chunks' pairs, then the output
#include "softmax_common.cuh"

template <class D>
__device__ void online_stats(const typename D::storage* x, long long cols, long long chunk_cols, long long chunks,
                             float* partial_max, float* partial_sum) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    float m = SOFTMAX_NEG_MAX, d = 0.0f;
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        const float v = D::load(x, chunk.row_offset + c);
        if (v > m) {
            d = d * expf(m - v) + 1.0f;
            m = v;
        } else {
            d += expf(v - m);
        }
    }
    const float block_m = block_max(m, scratch);
    const float block_d = block_sum(d * expf(m - block_m), scratch);
    if (threadIdx.x == 0) {
        partial_max[partial_index(chunks)] = block_m;
        partial_sum[partial_index(chunks)] = block_d;
    }
}

template <class D>
__device__ void online_out(const typename D::storage* x, typename D::storage* y, long long cols,
                           long long chunk_cols, long long chunks, const float* partial_max,
                           const float* partial_sum) {
    __shared__ float scratch[32];
    const Chunk chunk = this_chunk(cols, chunk_cols);
    const float m = row_max_of_partials(partial_max, chunks, scratch);
    const float inverse = 1.0f / row_sum_of_partials(partial_max, partial_sum, chunks, m, scratch);
    for (long long c = chunk.begin + threadIdx.x; c < chunk.end; c += blockDim.x) {
        const long long i = chunk.row_offset + c;
        D::store(y, i, expf(D::load(x, i) - m) * inverse);
    }
}

#define SOFTMAX_INSTANTIATE(D, SUFFIX)                                                                         \
    extern "C" __global__ void online_stats_##SUFFIX(const D::storage* x, long long cols, long long chunk_cols,  \
                                                     long long chunks, float* partial_max,                     \
                                                     float* partial_sum) {                                     \
        online_stats<D>(x, cols, chunk_cols, chunks, partial_max, partial_sum);                                \
    }                                                                                                          \
    extern "C" __global__ void online_out_##SUFFIX(const D::storage* x, D::storage* y, long long cols,          \
                                                   long long chunk_cols, long long chunks,                     \
                                                   const float* partial_max, const float* partial_sum) {       \
        online_out<D>(x, y, cols, chunk_cols, chunks, partial_max, partial_sum);                               \
    }

SOFTMAX_INSTANTIATE(F32, f32)
SOFTMAX_INSTANTIATE(F16, f16)
SOFTMAX_INSTANTIATE(BF16, bf16)
