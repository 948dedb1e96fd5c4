// Fake quantization of a row-major (rows, cols) float32 matrix, one thread block per row.
//
// Reference (CPU, torch): harness_quant.grids.quantize_dequantize(x, bits, symmetric, "channel") and
// harness_quant.quantizers.quest.QuESTQuantizer.forward. Both kernels read the row twice (a reduction for
// the scale, then the rounding) and write it once: 3 * 4 bytes per element from DRAM in the worst case, but
// a row of up to a few thousand floats stays in L1/L2 between the two reads, so the bandwidth bound is
// 8 bytes per element (read once, write once), plus 1 byte per element for QuEST's trust mask.
// The benchmark (benchmarks/quant/gpu_kernels.py) reports GB/s against that count and the measured copy.
//
// Launch: grid = rows, block = BLOCK threads (a power of two <= 1024), no dynamic shared memory.

#define BLOCK_MAX 1024

__device__ float block_reduce(float value, float* shared, int is_max) {
    int tid = threadIdx.x;
    shared[tid] = value;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (tid < stride) {
            float other = shared[tid + stride];
            shared[tid] = is_max ? fmaxf(shared[tid], other) : shared[tid] + other;
        }
        __syncthreads();
    }
    float result = shared[0];
    __syncthreads();
    return result;
}

// Round-to-nearest on a per-row grid. symmetric: integers -2^(b-1)..2^(b-1)-1 times absmax/(2^(b-1)-1),
// or sign(x)*mean|x| when bits == 1; asymmetric: (q - z) * s with q in 0..2^b-1 and the range widened to 0.
extern "C" __global__ void rtn_fake_quant_rows(const float* __restrict__ x, float* __restrict__ y, int cols,
                                               int bits, int symmetric) {
    __shared__ float shared[BLOCK_MAX];
    const float* row = x + (long long)blockIdx.x * cols;
    float* out = y + (long long)blockIdx.x * cols;
    float low = 0.0f, high = 0.0f, abs_max = 0.0f, abs_sum = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float v = row[i];
        low = fminf(low, v);
        high = fmaxf(high, v);
        abs_max = fmaxf(abs_max, fabsf(v));
        abs_sum += fabsf(v);
    }
    if (symmetric && bits == 1) {
        float scale = block_reduce(abs_sum, shared, 0) / cols;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) out[i] = row[i] >= 0.0f ? scale : -scale;
        return;
    }
    if (symmetric) {
        float qmax = (float)((1 << (bits - 1)) - 1);
        float scale = block_reduce(abs_max, shared, 1) / qmax;
        if (!(scale > 0.0f)) scale = 1.0f;
        for (int i = threadIdx.x; i < cols; i += blockDim.x)
            out[i] = fminf(fmaxf(rintf(row[i] / scale), -qmax - 1.0f), qmax) * scale;
        return;
    }
    low = -block_reduce(-low, shared, 1);  // min(x, 0) over the row
    high = block_reduce(high, shared, 1);
    float qmax = (float)((1 << bits) - 1);
    float scale = (high - low) / qmax;
    if (!(scale > 0.0f)) scale = 1.0f;
    float zero = rintf(-low / scale);
    for (int i = threadIdx.x; i < cols; i += blockDim.x)
        out[i] = (fminf(fmaxf(rintf(row[i] / scale) + zero, 0.0f), qmax) - zero) * scale;
}

// QuEST: clip at alpha_scale * RMS(row), round to the centred grid {-alpha, -alpha + step, ..., alpha} with
// step = 2 alpha / (2^b - 1), and write the trust mask (1 where |q - x| <= trust * step / 2).
extern "C" __global__ void quest_fake_quant_rows(const float* __restrict__ x, float* __restrict__ y,
                                                 unsigned char* __restrict__ trusted, int cols, int bits,
                                                 float alpha_scale, float trust) {
    __shared__ float shared[BLOCK_MAX];
    const long long offset = (long long)blockIdx.x * cols;
    float square_sum = 0.0f;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) square_sum += x[offset + i] * x[offset + i];
    float rms = fmaxf(sqrtf(block_reduce(square_sum, shared, 0) / cols), 1e-8f);
    float levels = (float)(1 << bits);
    float alpha = alpha_scale * rms;
    float step = 2.0f * alpha / (levels - 1.0f);
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        float v = x[offset + i];
        float index = fminf(fmaxf(rintf((v + alpha) / step), 0.0f), levels - 1.0f);
        float q = index * step - alpha;
        y[offset + i] = q;
        trusted[offset + i] = fabsf(q - v) <= trust * step * 0.5f * (1.0f + 1e-6f);
    }
}
