// Fused row softmax: one block per row, the row read once into registers.
//
// Reference (per row): m = max(x); e = exp(x - m); y = e / sum(e), with x read from memory once and y written
// once: 2b bytes per element of storage size b, the minimum, so the copy bandwidth is the roofline.
// Each of blockDim.x threads holds up to FUSED_MAX_ITEMS elements of its row (columns threadIdx.x + k blockDim.x,
// so the loads are coalesced); rows up to 1024 x 32 = 32768 elements fit. The launcher picks blockDim.x.
//   fused_*  grid (rows), block (threads), one row per block
#include "softmax_common.cuh"

#define FUSED_MAX_ITEMS 32

template <class D>
__device__ void fused(const typename D::storage* x, typename D::storage* y, long long cols) {
    __shared__ float scratch[32];
    const long long row_offset = (long long)blockIdx.x * cols;
    float values[FUSED_MAX_ITEMS];
    float m = SOFTMAX_NEG_MAX;
#pragma unroll
    for (int k = 0; k < FUSED_MAX_ITEMS; ++k) {
        const long long c = threadIdx.x + (long long)k * blockDim.x;
        values[k] = c < cols ? D::load(x, row_offset + c) : SOFTMAX_NEG_MAX;
        m = fmaxf(m, values[k]);
    }
    m = block_max(m, scratch);
    float d = 0.0f;
#pragma unroll
    for (int k = 0; k < FUSED_MAX_ITEMS; ++k) {
        values[k] = expf(values[k] - m);  // padding: exp(-FLT_MAX - m) = 0
        d += values[k];
    }
    const float inverse = 1.0f / block_sum(d, scratch);
#pragma unroll
    for (int k = 0; k < FUSED_MAX_ITEMS; ++k) {
        const long long c = threadIdx.x + (long long)k * blockDim.x;
        if (c < cols) D::store(y, row_offset + c, values[k] * inverse);
    }
}

extern "C" __global__ void fused_f32(const float* x, float* y, long long cols) { fused<F32>(x, y, cols); }
extern "C" __global__ void fused_f16(const bits16* x, bits16* y, long long cols) { fused<F16>(x, y, cols); }
extern "C" __global__ void fused_bf16(const bits16* x, bits16* y, long long cols) { fused<BF16>(x, y, cols); }
