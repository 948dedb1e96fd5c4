// Fused softmax of long rows, split over a thread-block cluster (sm_90): still one read and one write.
//
// Reference (per row): m = max(x); e = exp(x - m); y = e / sum(e). Bytes moved per element of storage size b:
// 1 read + 1 write = 2b, the minimum, so the copy bandwidth is the roofline, as for fused.cu.
// A row longer than one block's registers (1024 threads x 32 elements) is cut into CLUSTER consecutive chunks,
// one block each, the CLUSTER blocks of a row forming one thread-block cluster (__cluster_dims__), which the
// hardware schedules together on one GPC. Each block keeps its chunk in registers and publishes its partial
// max, then its partial sum of exp(x - row max), in shared memory; after a cluster barrier every block reads the
// others' partials through distributed shared memory (mapa + ld.shared::cluster) instead of a second pass
// over the row. Rows up to 8 x 32768 = 262144 elements (8: the largest portable cluster).
// VEC: elements per 128-bit load and store (4 float32, 8 16-bit values) when the row length is a multiple of
// it (every row then starts 16-byte aligned); 1 otherwise.
//   fused_split_<dtype>_c<CLUSTER>[_v]  grid (CLUSTER * rows), block (threads <= 1024), cluster (CLUSTER)
// Block b of a row owns columns [b * chunk_cols, min(cols, (b + 1) * chunk_cols)), chunk_cols = threads * 32.
#include "softmax_common.cuh"

#define SPLIT_ITEMS 32

__device__ __forceinline__ void cluster_sync_all() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// The float at the same shared-memory address in block `rank` of this cluster.
__device__ __forceinline__ float cluster_read(const float* local, unsigned rank) {
    unsigned address, remote;
    asm volatile("{\n\t.reg .u64 a;\n\tcvta.to.shared.u64 a, %1;\n\tcvt.u32.u64 %0, a;\n\t}" : "=r"(address) : "l"(local));
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(rank));
    float value;
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(value) : "r"(remote) : "memory");
    return value;
}

// 16 bytes of storage as float32 values (VEC of them) and back.
template <class D, int VEC>
struct Vector;

template <class D>
struct Vector<D, 1> {
    static __device__ __forceinline__ void load(const typename D::storage* p, long long i, float* v) { v[0] = D::load(p, i); }
    static __device__ __forceinline__ void store(typename D::storage* p, long long i, const float* v) { D::store(p, i, v[0]); }
};

template <>
struct Vector<F32, 4> {
    static __device__ __forceinline__ void load(const float* p, long long i, float* v) {
        const float4 q = *reinterpret_cast<const float4*>(p + i);
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    }
    static __device__ __forceinline__ void store(float* p, long long i, const float* v) {
        *reinterpret_cast<float4*>(p + i) = make_float4(v[0], v[1], v[2], v[3]);
    }
};

template <class D>
struct Vector16 {  // eight 16-bit values in one uint4
    static __device__ __forceinline__ void load(const bits16* p, long long i, float* v) {
        const uint4 q = *reinterpret_cast<const uint4*>(p + i);
        const unsigned words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const bits16 pair[2] = {(bits16)(words[k] & 0xffffu), (bits16)(words[k] >> 16)};
            v[2 * k] = D::load(pair, 0);
            v[2 * k + 1] = D::load(pair, 1);
        }
    }
    static __device__ __forceinline__ void store(bits16* p, long long i, const float* v) {
        unsigned words[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            bits16 pair[2];
            D::store(pair, 0, v[2 * k]);
            D::store(pair, 1, v[2 * k + 1]);
            words[k] = (unsigned)pair[0] | ((unsigned)pair[1] << 16);
        }
        *reinterpret_cast<uint4*>(p + i) = make_uint4(words[0], words[1], words[2], words[3]);
    }
};

template <>
struct Vector<F16, 8> : Vector16<F16> {};
template <>
struct Vector<BF16, 8> : Vector16<BF16> {};

template <class D, int CLUSTER, int VEC>
__device__ void fused_split(const typename D::storage* x, typename D::storage* y, long long cols) {
    __shared__ float scratch[32];
    __shared__ float published[2];  // this block's partial max, then its partial sum, read by the cluster
    const unsigned rank = blockIdx.x % CLUSTER;
    const long long row_offset = (long long)(blockIdx.x / CLUSTER) * cols;
    const long long chunk_cols = (long long)blockDim.x * SPLIT_ITEMS;
    const long long begin = rank * chunk_cols;
    float values[SPLIT_ITEMS];
    float m = SOFTMAX_NEG_MAX;
#pragma unroll
    for (int k = 0; k < SPLIT_ITEMS / VEC; ++k) {
        // Vector k of this thread: columns begin + (k * blockDim.x + threadIdx.x) * VEC + 0 .. VEC - 1.
        const long long c = begin + ((long long)k * blockDim.x + threadIdx.x) * VEC;
        if (c < cols) {  // cols is a multiple of VEC: a vector is either whole or past the end
            Vector<D, VEC>::load(x, row_offset + c, values + k * VEC);
        } else {
#pragma unroll
            for (int j = 0; j < VEC; ++j) values[k * VEC + j] = SOFTMAX_NEG_MAX;
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) m = fmaxf(m, values[k * VEC + j]);
    }
    m = block_max(m, scratch);
    if (threadIdx.x == 0) published[0] = m;
    cluster_sync_all();
#pragma unroll
    for (unsigned r = 0; r < CLUSTER; ++r) m = fmaxf(m, cluster_read(&published[0], r));
    float d = 0.0f;
#pragma unroll
    for (int k = 0; k < SPLIT_ITEMS; ++k) {
        values[k] = expf(values[k] - m);  // padding: exp(-FLT_MAX - m) = 0
        d += values[k];
    }
    d = block_sum(d, scratch);
    if (threadIdx.x == 0) published[1] = d;
    cluster_sync_all();
    d = 0.0f;
#pragma unroll
    for (unsigned r = 0; r < CLUSTER; ++r) d += cluster_read(&published[1], r);
    const float inverse = 1.0f / d;
#pragma unroll
    for (int k = 0; k < SPLIT_ITEMS / VEC; ++k) {
        const long long c = begin + ((long long)k * blockDim.x + threadIdx.x) * VEC;
#pragma unroll
        for (int j = 0; j < VEC; ++j) values[k * VEC + j] *= inverse;
        if (c < cols) Vector<D, VEC>::store(y, row_offset + c, values + k * VEC);
    }
    cluster_sync_all();  // no block leaves while another may still read its shared memory
}

#define SPLIT_INSTANTIATE(D, SUFFIX, CLUSTER, VEC, TAG)                                                       \
    extern "C" __global__ void __cluster_dims__(CLUSTER, 1, 1)                                                 \
        fused_split_##SUFFIX##_c##CLUSTER##TAG(const D::storage* x, D::storage* y, long long cols) {          \
        fused_split<D, CLUSTER, VEC>(x, y, cols);                                                              \
    }
#define SOFTMAX_INSTANTIATE(D, SUFFIX, VEC)                                                                    \
    SPLIT_INSTANTIATE(D, SUFFIX, 2, 1, )                                                                       \
    SPLIT_INSTANTIATE(D, SUFFIX, 4, 1, )                                                                       \
    SPLIT_INSTANTIATE(D, SUFFIX, 8, 1, )                                                                       \
    SPLIT_INSTANTIATE(D, SUFFIX, 2, VEC, _v)                                                                   \
    SPLIT_INSTANTIATE(D, SUFFIX, 4, VEC, _v)                                                                   \
    SPLIT_INSTANTIATE(D, SUFFIX, 8, VEC, _v)

SOFTMAX_INSTANTIATE(F32, f32, 4)
SOFTMAX_INSTANTIATE(F16, f16, 8)
SOFTMAX_INSTANTIATE(BF16, bf16, 8)
