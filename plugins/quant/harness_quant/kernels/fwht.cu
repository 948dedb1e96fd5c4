// Block fast Walsh-Hadamard transform: every contiguous block of n floats (n a power of two, <= 2048) is
// multiplied by the Sylvester Hadamard matrix scaled by 1/sqrt(n), in place in shared memory.
//
// Reference (CPU, torch): harness_quant.hadamard.fwht. Each element is read once and written once:
// 8 bytes per element, the bound the benchmark (benchmarks/quant/gpu_kernels.py) measures GB/s against.
// log2(n) butterfly stages run in shared memory; with n = 128 that is 7 stages of n/2 butterflies.
//
// Launch: grid = total_elements / n blocks, block = n / 2 threads, dynamic shared memory = n * 4 bytes.

extern "C" __global__ void fwht_blocks(const float* __restrict__ x, float* __restrict__ y, int n) {
    extern __shared__ float block[];
    const long long base = (long long)blockIdx.x * n;
    int t = threadIdx.x;
    block[t] = x[base + t];
    block[t + n / 2] = x[base + t + n / 2];
    __syncthreads();
    for (int half = 1; half < n; half <<= 1) {
        // Butterfly t pairs element i with i + half, where i runs over the first half of each 2*half span.
        int i = (t / half) * 2 * half + (t % half);
        float a = block[i];
        float b = block[i + half];
        __syncthreads();
        block[i] = a + b;
        block[i + half] = a - b;
        __syncthreads();
    }
    float norm = rsqrtf((float)n);
    y[base + t] = block[t] * norm;
    y[base + t + n / 2] = block[t + n / 2] * norm;
}
