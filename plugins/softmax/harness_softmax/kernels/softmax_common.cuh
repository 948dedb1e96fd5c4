// Shared device code of the softmax kernels: storage types, block reductions, combining per-chunk partials.
//
// Compiles under NVRTC and nvcc alike, so it includes no header: NVRTC has no include path to cuda_fp16.h or
// cuda_bf16.h, and defines neither INFINITY nor FLT_MAX. 16-bit values travel as raw bits (unsigned short)
// and are converted with PTX instructions; constants come from their bit patterns.
//
// Layout shared by every kernel: x and y are rows x cols, row-major. Multi-pass kernels run on a grid of
// (rows, chunks) blocks; block (r, c) owns columns [c * chunk_cols, min(cols, (c + 1) * chunk_cols)) of row r
// and writes its partial statistics to partial[r * chunks + c].
#pragma once

typedef unsigned short bits16;

#define SOFTMAX_NEG_INF __int_as_float(0xff800000)
// Start value of running maxima: finite, so that combining two empty partials gives exp(0) * 0 = 0, not NaN.
#define SOFTMAX_NEG_MAX __int_as_float(0xff7fffff)
#define SOFTMAX_LOG2E 1.4426950408889634f
// ln 2 = LN2_HI + LN2_LO with a 12-bit LN2_HI: n * LN2_HI is exact for |n| < 2^12 (see cpu.py).
#define SOFTMAX_LN2_HI 0.693115234375f
#define SOFTMAX_LN2_LO 3.194618494528623e-05f

struct F32 {
    typedef float storage;
    static __device__ __forceinline__ float load(const float* p, long long i) { return p[i]; }
    static __device__ __forceinline__ void store(float* p, long long i, float v) { p[i] = v; }
};

struct F16 {
    typedef bits16 storage;
    static __device__ __forceinline__ float load(const bits16* p, long long i) {
        float v;
        asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(p[i]));
        return v;
    }
    static __device__ __forceinline__ void store(bits16* p, long long i, float v) {
        bits16 h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
        p[i] = h;
    }
};

struct BF16 {
    typedef bits16 storage;
    static __device__ __forceinline__ float load(const bits16* p, long long i) {
        return __uint_as_float(((unsigned int)p[i]) << 16);
    }
    static __device__ __forceinline__ void store(bits16* p, long long i, float v) {
        unsigned int u = __float_as_uint(v);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            p[i] = (bits16)0x7fc0;  // canonical quiet NaN
            return;
        }
        u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
        p[i] = (bits16)(u >> 16);
    }
};

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Block-wide reductions; blockDim.x must be a multiple of 32 (the launchers guarantee it). Every thread gets
// the result. scratch holds 32 floats of shared memory and may be reused right after the call returns.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = (threadIdx.x < warps) ? scratch[threadIdx.x] : SOFTMAX_NEG_MAX;
    if (warp == 0) v = warp_max(v);
    if (threadIdx.x == 0) scratch[0] = v;
    __syncthreads();
    v = scratch[0];
    __syncthreads();
    return v;
}

__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = (threadIdx.x < warps) ? scratch[threadIdx.x] : 0.0f;
    if (warp == 0) v = warp_sum(v);
    if (threadIdx.x == 0) scratch[0] = v;
    __syncthreads();
    v = scratch[0];
    __syncthreads();
    return v;
}

// The max of a row's per-chunk partial maxima.
__device__ __forceinline__ float row_max_of_partials(const float* partial_max, long long chunks, float* scratch) {
    const long long row = blockIdx.x;
    float m = SOFTMAX_NEG_MAX;
    for (long long c = threadIdx.x; c < chunks; c += blockDim.x) m = fmaxf(m, partial_max[row * chunks + c]);
    return block_max(m, scratch);
}

// sum_c d_c * exp(m_c - m) of a row's (max, sum) partials, for the row's max m.
__device__ __forceinline__ float row_sum_of_partials(const float* partial_max, const float* partial_sum,
                                                     long long chunks, float row_max, float* scratch) {
    const long long row = blockIdx.x;
    float d = 0.0f;
    for (long long c = threadIdx.x; c < chunks; c += blockDim.x) {
        d += partial_sum[row * chunks + c] * expf(partial_max[row * chunks + c] - row_max);
    }
    return block_sum(d, scratch);
}

// Columns [begin, end) of this block's chunk, and the offset of its row.
struct Chunk {
    long long row_offset, begin, end;
};

__device__ __forceinline__ Chunk this_chunk(long long cols, long long chunk_cols) {
    Chunk chunk;
    chunk.row_offset = (long long)blockIdx.x * cols;
    chunk.begin = (long long)blockIdx.y * chunk_cols;
    chunk.end = chunk.begin + chunk_cols < cols ? chunk.begin + chunk_cols : cols;
    return chunk;
}

__device__ __forceinline__ long long partial_index(long long chunks) {
    return (long long)blockIdx.x * chunks + blockIdx.y;
}
