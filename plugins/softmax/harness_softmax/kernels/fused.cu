// Fused row softmax: one block per row, the row read once into registers.
//
// Reference (per row): m = max(x); e = exp(x - m); y = e / sum(e), with x read from memory once and y written
// once: 2b bytes per element of storage size b, the minimum, so the copy bandwidth is the roofline.
// Each of blockDim.x threads holds ITEMS elements of its row (columns threadIdx.x + k blockDim.x, so the loads
// are coalesced); ITEMS is a template parameter so the arrays live in registers and a short row does not pay
// for exps of padding. Rows up to 1024 x 32 = 32768 elements fit. The launcher picks ITEMS and blockDim.x.
//   fused_<dtype>_<ITEMS>  grid (rows), block (threads), one row per block
#include "softmax_common.cuh"

template <class D, int ITEMS>
__device__ void fused(const typename D::storage* x, typename D::storage* y, long long cols) {
    __shared__ float scratch[32];
    const long long row_offset = (long long)blockIdx.x * cols;
    float values[ITEMS];
    float m = SOFTMAX_NEG_MAX;
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const long long c = threadIdx.x + (long long)k * blockDim.x;
        values[k] = c < cols ? D::load(x, row_offset + c) : SOFTMAX_NEG_MAX;
        m = fmaxf(m, values[k]);
    }
    m = block_max(m, scratch);
    float d = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        values[k] = expf(values[k] - m);  // padding: exp(-FLT_MAX - m) = 0
        d += values[k];
    }
    const float inverse = 1.0f / block_sum(d, scratch);
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const long long c = threadIdx.x + (long long)k * blockDim.x;
        if (c < cols) D::store(y, row_offset + c, values[k] * inverse);
    }
}

#define FUSED_INSTANTIATE(D, SUFFIX, ITEMS)                                                                    \
    extern "C" __global__ void fused_##SUFFIX##_##ITEMS(const D::storage* x, D::storage* y, long long cols) { \
        fused<D, ITEMS>(x, y, cols);                                                                           \
    }
#define SOFTMAX_INSTANTIATE(D, SUFFIX)                                                                         \
    FUSED_INSTANTIATE(D, SUFFIX, 4)                                                                            \
    FUSED_INSTANTIATE(D, SUFFIX, 8)                                                                            \
    FUSED_INSTANTIATE(D, SUFFIX, 16)                                                                           \
    FUSED_INSTANTIATE(D, SUFFIX, 32)

SOFTMAX_INSTANTIATE(F32, f32)
SOFTMAX_INSTANTIATE(F16, f16)
SOFTMAX_INSTANTIATE(BF16, bf16)
