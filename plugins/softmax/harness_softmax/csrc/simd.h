/* The vector layer of the CPU softmax kernels: one set of small inline functions per instruction set.
 *
 * softmax_cpu.c is compiled once per instruction set (setup.py passes the -m flags and SOFTMAX_ISA_*), as
 * XNNPACK compiles each microkernel file with its own flags; the kernels in softmax_kernels.h are written
 * once against this layer:
 *
 *   SOFTMAX_ISA_AVX512  16 floats per vector, AVX-512F (+ F16C); exp scaled by vscalefps (exact underflow)
 *   SOFTMAX_ISA_AVX2    8 floats per vector, AVX2 + FMA + F16C; 2^n built in the exponent bits
 *   (neither)           1 float per "vector", plain C99: compiles anywhere (ARM, a CPU without AVX2, MSVC)
 *
 * The exponentials follow XNNPACK (src/f32-raddstoreexpminusmax, f32-raddextexp, f32-vscaleextexp):
 * Cody-Waite range reduction x = n ln2 + t with ln 2 split in two, |t| <= ln2 / 2, and a degree-5
 * polynomial for e^t (XNNPACK's p5 coefficients, max relative error about 1.2e-7 on the interval).
 */
#ifndef HARNESS_SOFTMAX_SIMD_H
#define HARNESS_SOFTMAX_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SM_LOG2E 0x1.715476p+0f
/* ln 2 = LN2_HI + LN2_LO with a 12-bit LN2_HI, so n * LN2_HI is exact for |n| < 2^12 even without FMA (the
 * two-pass exponential sees |n| up to 1443 for inputs of +-1000: XNNPACK's rr2 split assumes |n| < 2^8). */
#define SM_LN2_HI 0x1.62E000p-1f /* 0.693115234375 = 2839 / 4096 */
#define SM_LN2_LO 0x1.0BFBE8p-15f /* ln 2 - LN2_HI */
#define SM_C5 0x1.0F9F9Cp-7f
#define SM_C4 0x1.573A1Ap-5f
#define SM_C3 0x1.555A80p-3f
#define SM_C2 0x1.FFFDC6p-2f
#define SM_C1 0x1.FFFFF6p-1f
/* Adding 1.5 * 2^23 rounds a float of magnitude < 2^22 to an integer in the low mantissa bits; the extra 127
 * is the exponent bias, so shifting those bits left by 23 builds 2^n directly (valid for n in [-127, 128];
 * n = -127 gives the bit pattern of +0.0, which is how terms below the range are flushed). */
#define SM_MAGIC_BIAS 0x1.8000FEp23f
#define SM_ROUND_BIAS 0x1.8p23f
/* exp(x) < FLT_MIN below this: the max-subtracted exponential returns 0 there (the protocol counts a 0 where
 * the float64 reference is below the smallest normal as exact). */
#define SM_EXP_CUTOFF -0x1.5D589Ep6f /* -87.336544 */
/* The two-pass algorithm has no max pass, so it clamps its inputs to +-X_LIMIT: -inf becomes a term 2^-3e6
 * times smaller than any real one, and |x log2 e| < 2^22 keeps the rounding trick exact. Rows whose values
 * exceed the limit are outside the algorithm's domain (documented in cpu.py). */
#define SM_X_LIMIT 0x1.0p21f /* 2097152 */

#if defined(SOFTMAX_ISA_AVX512) || defined(SOFTMAX_ISA_AVX2)
#include <immintrin.h>
#endif

#if defined(SOFTMAX_ISA_AVX512)
/* ------------------------------------------------------------------------------------------------ AVX-512 */
#define SM_ISA_NAME "avx512"
#define SM_W 16
#define SM_UNROLL 4
typedef __m512 vf;

static inline vf v_set1(float a) { return _mm512_set1_ps(a); }
static inline vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
/* max(a, b) returns b where a is NaN: v_max(x, bound) turns a NaN (from -inf - -inf) into the bound. */
static inline vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf v_round(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline void v_store_lanes(float *out, vf a) { _mm512_storeu_ps(out, a); }

static inline vf v_load_f32(const float *p) { return _mm512_loadu_ps(p); }
static inline vf v_load_bf16(const uint16_t *p) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
static inline vf v_load_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline void v_store_f32(float *p, vf a, int nt) {
    if (nt) _mm512_stream_ps(p, a); else _mm512_storeu_ps(p, a);
}
static inline __m256i sm_bf16_bits(vf a) { /* round to nearest even, as torch does */
    __m512i bits = _mm512_castps_si512(a);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    bits = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(bits, 16));
}
static inline void v_store_16(uint16_t *p, __m256i h, int nt) {
    if (nt) _mm256_stream_si256((__m256i *)p, h); else _mm256_storeu_si256((__m256i *)p, h);
}
static inline void v_store_bf16(uint16_t *p, vf a, int nt) { v_store_16(p, sm_bf16_bits(a), nt); }
static inline void v_store_f16(uint16_t *p, vf a, int nt) {
    v_store_16(p, _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), nt);
}
static inline void v_fence(void) { _mm_sfence(); }
static inline int v_any_gt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ) != 0; }

/* a * 2^e for integer-valued e, with correct rounding into the subnormal range (vscalefps). */
static inline vf v_scale_pow2(vf a, vf e) { return _mm512_scalef_ps(a, e); }
/* 2^e for integer-valued e <= 0 (sums; exact here, down to 0). */
static inline vf v_pow2_flush(vf e) { return _mm512_scalef_ps(v_set1(1.0f), e); }

/* scale * exp(x) for x <= 0 (x = -inf and NaN give 0). */
static inline vf v_exp_minus_scaled(vf x, vf scale) {
    x = v_max(x, v_set1(-110.0f)); /* e^-110 rounds to 0 in float32; also maps NaN to -110 */
    vf n = v_round(v_mul(x, v_set1(SM_LOG2E)));
    vf t = v_fma(n, v_set1(-SM_LN2_HI), x);
    t = v_fma(n, v_set1(-SM_LN2_LO), t);
    vf p = v_fma(v_set1(SM_C5), t, v_set1(SM_C4));
    p = v_fma(p, t, v_set1(SM_C3));
    p = v_fma(p, t, v_set1(SM_C2));
    p = v_fma(p, t, v_set1(SM_C1));
    p = v_fma(p, t, v_set1(1.0f));
    return v_scale_pow2(v_mul(p, scale), n);
}

#elif defined(SOFTMAX_ISA_AVX2)
/* ------------------------------------------------------------------------------------------- AVX2 + FMA */
#define SM_ISA_NAME "avx2"
#define SM_W 8
#define SM_UNROLL 4
typedef __m256 vf;

static inline vf v_set1(float a) { return _mm256_set1_ps(a); }
static inline vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf v_min(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf v_round(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline void v_store_lanes(float *out, vf a) { _mm256_storeu_ps(out, a); }

static inline vf v_load_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline vf v_load_bf16(const uint16_t *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
static inline vf v_load_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline void v_store_f32(float *p, vf a, int nt) {
    if (nt) _mm256_stream_ps(p, a); else _mm256_storeu_ps(p, a);
}
static inline __m128i sm_bf16_bits(vf a) {
    __m256i bits = _mm256_castps_si256(a);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    bits = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF))), 16);
    /* packus saturates 32 -> 16 bits unsigned; the values are < 2^16, and the lanes come back in order after
     * the 64-bit permute. */
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
    return _mm256_castsi256_si128(packed);
}
static inline void v_store_16(uint16_t *p, __m128i h, int nt) {
    if (nt) _mm_stream_si128((__m128i *)p, h); else _mm_storeu_si128((__m128i *)p, h);
}
static inline void v_store_bf16(uint16_t *p, vf a, int nt) { v_store_16(p, sm_bf16_bits(a), nt); }
static inline void v_store_f16(uint16_t *p, vf a, int nt) {
    v_store_16(p, _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), nt);
}
static inline void v_fence(void) { _mm_sfence(); }
static inline int v_any_gt(vf a, vf b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)) != 0; }

/* 2^e for integer-valued e in [-127, 128] (e = -127 gives +0.0). */
static inline vf sm_pow2_bits(vf e) {
    vf biased = v_add(e, v_set1(SM_MAGIC_BIAS));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(biased), 23));
}
/* a * 2^e for integer-valued e <= 3 and a in [0.35, 2.9] (the two-pass output: (p / M) * 2^(n - E)).
 * Dividing a by 4 first keeps 2^(e + 2) normal wherever the result is >= FLT_MIN; below that the result is
 * flushed to 0, which the protocol counts as exact (the reference is below the smallest normal there). */
static inline vf v_scale_pow2(vf a, vf e) {
    vf s = sm_pow2_bits(v_max(v_add(e, v_set1(2.0f)), v_set1(-127.0f)));
    return v_mul(v_mul(a, v_set1(0.25f)), s);
}
/* 2^e for integer-valued e <= 0, 0 below 2^-126 (sums: such terms are 2^-126 of the block's largest term). */
static inline vf v_pow2_flush(vf e) { return sm_pow2_bits(v_max(e, v_set1(-127.0f))); }

/* scale * exp(x) for x <= 0 (x = -inf and NaN give 0): XNNPACK's avx2-rr2-p5 with the magic-bias 2^n. */
static inline vf v_exp_minus_scaled(vf x, vf scale) {
    vf n = v_fma(x, v_set1(SM_LOG2E), v_set1(SM_MAGIC_BIAS));
    vf s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(n), 23));
    n = v_sub(n, v_set1(SM_MAGIC_BIAS));
    vf t = v_fma(n, v_set1(-SM_LN2_HI), x);
    t = v_fma(n, v_set1(-SM_LN2_LO), t);
    vf p = v_fma(v_set1(SM_C5), t, v_set1(SM_C4));
    p = v_fma(p, t, v_set1(SM_C3));
    p = v_fma(p, t, v_set1(SM_C2));
    p = v_fma(p, t, v_set1(SM_C1));
    p = v_fma(p, t, v_set1(1.0f));
    /* (e^t * scale) * 2^n: one rounding into the result, which flush-to-zero zeroes only below FLT_MIN
     * (XNNPACK's s + (t s) p underflows t s first and loses up to 35% just above FLT_MIN under FTZ). */
    vf f = v_mul(v_mul(p, scale), s);
    /* ordered >= : NaN (from -inf - -inf) compares false and gives 0 */
    return _mm256_and_ps(f, _mm256_cmp_ps(x, v_set1(SM_EXP_CUTOFF), _CMP_GE_OQ));
}

#else
/* ---------------------------------------------------------------------------------------- portable C99 */
#define SM_ISA_NAME "portable"
#define SM_W 1
#define SM_UNROLL 4
typedef float vf;

/* No fmaf: without hardware FMA it is a slow library call. The 12-bit LN2_HI keeps n * LN2_HI exact, so
 * the range reduction is as accurate unfused (a compiler that contracts a * b + c only improves it). */
static inline vf v_set1(float a) { return a; }
static inline vf v_add(vf a, vf b) { return a + b; }
static inline vf v_sub(vf a, vf b) { return a - b; }
static inline vf v_mul(vf a, vf b) { return a * b; }
static inline vf v_fma(vf a, vf b, vf c) { return a * b + c; }
static inline vf v_max(vf a, vf b) { return a > b ? a : b; } /* NaN a gives b, as vmaxps does */
static inline vf v_min(vf a, vf b) { return a < b ? a : b; }
static inline vf v_round(vf a) { /* |a| < 2^22 */
    volatile float biased = a + SM_ROUND_BIAS; /* volatile: no excess precision on x87 */
    return biased - SM_ROUND_BIAS;
}
static inline void v_store_lanes(float *out, vf a) { out[0] = a; }

static inline uint32_t sm_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float sm_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline vf v_load_f32(const float *p) { return *p; }
static inline vf v_load_bf16(const uint16_t *p) { return sm_float((uint32_t)*p << 16); }
static inline vf v_load_f16(const uint16_t *p) { /* IEEE binary16 -> binary32, subnormals included */
    uint32_t h = *p, sign = (h & 0x8000u) << 16, exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
    if (exponent == 0x1F) return sm_float(sign | 0x7F800000u | (mantissa << 13));
    if (exponent == 0) { /* zero or subnormal: mantissa * 2^-24, exact in float32 */
        float value = (float)mantissa * 0x1.0p-24f;
        return sign ? -value : value;
    }
    return sm_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}
static inline void v_store_f32(float *p, vf a, int nt) { (void)nt; *p = a; }
static inline uint16_t sm_bf16_bits(float a) {
    uint32_t u = sm_bits(a);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
static inline void v_store_bf16(uint16_t *p, vf a, int nt) { (void)nt; *p = sm_bf16_bits(a); }
static inline uint16_t sm_f16_bits(float a) { /* round to nearest even, subnormals and overflow to inf */
    uint32_t u = sm_bits(a), sign = (u >> 16) & 0x8000u;
    float magnitude = fabsf(a);
    if (magnitude != magnitude) return (uint16_t)(sign | 0x7E00u);
    if (magnitude >= 65520.0f) return (uint16_t)(sign | 0x7C00u);
    if (magnitude < 0x1.0p-14f) { /* subnormal half: multiples of 2^-24; rint rounds to nearest even */
        return (uint16_t)(sign | (uint32_t)rintf(magnitude * 0x1.0p24f));
    }
    uint32_t m = sm_bits(magnitude);
    m += 0xFFFu + ((m >> 13) & 1u); /* round the 13 dropped bits to nearest even */
    return (uint16_t)(sign | ((m - (112u << 23)) >> 13));
}
static inline void v_store_f16(uint16_t *p, vf a, int nt) { (void)nt; *p = sm_f16_bits(a); }
static inline void v_fence(void) {}
static inline int v_any_gt(vf a, vf b) { return a > b; }

static inline vf sm_pow2_bits(vf e) { /* integer-valued e in [-127, 128]; -127 gives +0.0 */
    return sm_float((uint32_t)((int32_t)e + 127) << 23);
}
static inline vf v_scale_pow2(vf a, vf e) {
    vf shifted = e + 2.0f;
    return (a * 0.25f) * sm_pow2_bits(shifted < -127.0f ? -127.0f : shifted);
}
static inline vf v_pow2_flush(vf e) { return sm_pow2_bits(e < -127.0f ? -127.0f : e); }

static inline vf v_exp_minus_scaled(vf x, vf scale) {
    if (!(x >= SM_EXP_CUTOFF)) return 0.0f; /* also NaN */
    vf n = v_round(x * SM_LOG2E);
    vf t = x - n * SM_LN2_HI;
    t = t - n * SM_LN2_LO;
    vf p = ((((SM_C5 * t + SM_C4) * t + SM_C3) * t + SM_C2) * t + SM_C1) * t + 1.0f;
    return (p * scale) * sm_pow2_bits(n);
}
#endif

/* Software prefetch SM_PREFETCH_BYTES ahead of the loads: the hardware prefetchers alone let a pass that
 * computes an exponential per element run at (memory time + compute time) instead of the larger of the two. */
#ifndef SM_PREFETCH_BYTES
#define SM_PREFETCH_BYTES 4096 /* measured best from 2 KiB to 16 KiB on the 2-core Xeon VM (benchmarks/RESULTS.md) */
#endif
#if defined(SM_PREFETCH)
/* given on the command line (benchmarks: -D'SM_PREFETCH(p)=((void)(p))' turns prefetching off) */
#elif defined(SOFTMAX_ISA_AVX512) || defined(SOFTMAX_ISA_AVX2)
#define SM_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#elif defined(__GNUC__)
#define SM_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define SM_PREFETCH(p) ((void)(p))
#endif

/* e^t with x = n ln2 + t for the two-pass algorithm (no max subtracted): returns e^t in [0.70, 1.42] and n. */
static inline vf v_ext_exp(vf x, vf *n_out) {
    x = v_min(v_max(x, v_set1(-SM_X_LIMIT)), v_set1(SM_X_LIMIT)); /* max first: maps NaN to -X_LIMIT */
    vf n = v_round(v_mul(x, v_set1(SM_LOG2E)));
    vf t = v_fma(n, v_set1(-SM_LN2_HI), x);
    t = v_fma(n, v_set1(-SM_LN2_LO), t);
    vf p = v_fma(v_set1(SM_C5), t, v_set1(SM_C4));
    p = v_fma(p, t, v_set1(SM_C3));
    p = v_fma(p, t, v_set1(SM_C2));
    p = v_fma(p, t, v_set1(SM_C1));
    p = v_fma(p, t, v_set1(1.0f));
    *n_out = n;
    return p;
}

/* The two-pass output exp(x) / sum for sum = 2^exponent / inverse_mantissa. */
static inline vf sm_ext_output(vf x, vf inverse_mantissa, vf exponent) {
    vf n;
    vf p = v_ext_exp(x, &n);
    return v_scale_pow2(v_mul(p, inverse_mantissa), v_sub(n, exponent));
}

#endif
