/* CPU softmax kernels as a CPython extension, compiled once per instruction set by setup.py:
 * harness_softmax._cpu_avx512, _cpu_avx2 and _cpu_portable, from this file with SOFTMAX_MODULE and one of
 * SOFTMAX_ISA_AVX512 / SOFTMAX_ISA_AVX2 (or neither) defined. harness_softmax.cpu picks one at run time from
 * the CPU's flags (cpu_features() below) and splits work over threads; every function here releases the GIL.
 *
 * Pointers come in as integers (torch's data_ptr()): the Python side checks dtype, shape and contiguity.
 * dtype codes: 0 float32, 1 bfloat16, 2 float16. Algorithm codes: see SM_* below.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

#include "simd.h"

#ifndef SOFTMAX_MODULE
#error "define SOFTMAX_MODULE (the extension's name, e.g. _cpu_avx2)"
#endif
#define SM_STR_(x) #x
#define SM_STR(x) SM_STR_(x)
#define SM_PASTE_(a, b) a##b
#define SM_PASTE(a, b) SM_PASTE_(a, b)

enum { SM_THREE_PASS_RECOMPUTE = 0, SM_THREE_PASS_RELOAD = 1, SM_TWO_PASS = 2, SM_ONLINE = 3, SM_FUSED = 4 };
enum { SM_FLOAT32 = 0, SM_BFLOAT16 = 1, SM_FLOAT16 = 2 };

static void *sm_aligned_alloc(size_t bytes) {
    void *raw = malloc(bytes + 64 + sizeof(void *));
    if (!raw) return NULL;
    uintptr_t aligned = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)aligned)[-1] = raw;
    return (void *)aligned;
}
static void sm_aligned_free(void *p) { if (p) free(((void **)p)[-1]); }

static float sm_hmax(vf v) {
    float lanes[SM_W];
    v_store_lanes(lanes, v);
    float m = lanes[0];
    for (int l = 1; l < SM_W; l++) m = lanes[l] > m ? lanes[l] : m;
    return m;
}

/* Two-level summation: the kernels accumulate in float32 vectors (SM_UNROLL * SM_W partial sums) and every
 * SM_FLUSH_BLOCKS blocks fold them into per-lane doubles, so a long row's float32 rounding error grows with
 * SM_FLUSH_BLOCKS terms, not with n / (SM_UNROLL * SM_W) (all-equal rows of 10^6 elements: 1e-4 -> 1e-7). */
#define SM_FLUSH_BLOCKS 256
#define SM_LANES (SM_UNROLL * SM_W)

/* 2^k for integer k <= 0 as a double, built in the exponent bits (0 below 2^-1022: those terms are 2^-1022
 * of the largest and cannot matter); no libm call in the per-row path. */
static inline double sm_pow2_double(double k) {
    if (k < -1022.0) return 0.0;
    uint64_t bits = (uint64_t)((int64_t)k + 1023) << 52;
    double result;
    memcpy(&result, &bits, sizeof result);
    return result;
}

/* exp(d) for d <= 0 with the kernels' own float32 exponential (relative error ~1e-7): rescaling factors. */
static inline double sm_exp_minus_scalar(double d) {
    float lanes[SM_W];
    v_store_lanes(lanes, v_exp_minus_scaled(v_set1((float)d), v_set1(1.0f)));
    return lanes[0];
}

static inline void sm_flush_sum(double *outer, vf *acc) {
    float lanes[SM_W];
    for (int u = 0; u < SM_UNROLL; u++) {
        v_store_lanes(lanes, acc[u]);
        for (int l = 0; l < SM_W; l++) outer[u * SM_W + l] += lanes[l];
        acc[u] = v_set1(0.0f);
    }
}

static double sm_total(const double *outer) {
    double sum = 0.0;
    for (int i = 0; i < SM_LANES; i++) sum += outer[i];
    return sum;
}

/* outer (scaled by 2^-outer_e per lane) += acc (scaled by 2^-acc_e); outer_e becomes acc_e (acc_e only grows). */
static inline void sm_flush_ext(double *outer, double *outer_e, vf *acc, vf acc_e) {
    float lanes[SM_W], lanes_e[SM_W];
    v_store_lanes(lanes_e, acc_e);
    for (int l = 0; l < SM_W; l++) {
        double shift = outer_e[l] - lanes_e[l];
        if (shift == 0.0) continue; /* the usual case once the row's largest exponent has been seen */
        double factor = sm_pow2_double(shift);
        for (int u = 0; u < SM_UNROLL; u++) outer[u * SM_W + l] *= factor;
        outer_e[l] = lanes_e[l];
    }
    for (int u = 0; u < SM_UNROLL; u++) {
        v_store_lanes(lanes, acc[u]);
        for (int l = 0; l < SM_W; l++) outer[u * SM_W + l] += lanes[l];
        acc[u] = v_set1(0.0f);
    }
}

/* sum = mantissa * 2^exponent, mantissa in [0.5, 1). */
static inline void sm_combine_ext(const double *outer, const double *outer_e, double *mantissa, double *exponent) {
    double top = outer_e[0];
    for (int l = 1; l < SM_W; l++) top = outer_e[l] > top ? outer_e[l] : top;
    double sum = 0.0;
    for (int l = 0; l < SM_W; l++) {
        double factor = sm_pow2_double(outer_e[l] - top);
        for (int u = 0; u < SM_UNROLL; u++) sum += outer[u * SM_W + l] * factor;
    }
    int k = 0;
    *mantissa = frexp(sum, &k);
    *exponent = top + k;
}

/* outer (relative to outer_max per lane) += acc (relative to running); outer_max becomes running. */
static inline void sm_flush_online(double *outer, double *outer_max, vf *acc, vf running) {
    float lanes_m[SM_W];
    v_store_lanes(lanes_m, running);
    for (int l = 0; l < SM_W; l++) {
        if (outer_max[l] == lanes_m[l]) continue;
        double factor = outer_max[l] == -INFINITY ? 0.0 : sm_exp_minus_scalar(outer_max[l] - lanes_m[l]);
        for (int u = 0; u < SM_UNROLL; u++) outer[u * SM_W + l] *= factor;
        outer_max[l] = lanes_m[l];
    }
    sm_flush_sum(outer, acc);
}

/* (max, sum of exp(x - max)) from the per-lane running maxima and sums. */
static inline void sm_combine_online(const double *outer, const double *outer_max, double *max, double *sum) {
    double top = outer_max[0];
    for (int l = 1; l < SM_W; l++) top = outer_max[l] > top ? outer_max[l] : top;
    double total = 0.0;
    for (int l = 0; l < SM_W; l++) {
        if (outer_max[l] == -INFINITY) continue;
        double factor = outer_max[l] == top ? 1.0 : sm_exp_minus_scalar(outer_max[l] - top);
        for (int u = 0; u < SM_UNROLL; u++) total += outer[u * SM_W + l] * factor;
    }
    *max = top;
    *sum = total;
}

/* ---- the kernels, once per storage type ---- */
#define SM_T float
#define SM_SUFFIX f32
#define SM_LOADV(p) v_load_f32(p)
#define SM_STOREV(p, v, nt) v_store_f32((p), (v), (nt))
#define SM_NEG_INF (-INFINITY)
#include "softmax_kernels.h"
#undef SM_T
#undef SM_SUFFIX
#undef SM_LOADV
#undef SM_STOREV
#undef SM_NEG_INF

#define SM_T uint16_t
#define SM_SUFFIX bf16
#define SM_LOADV(p) v_load_bf16(p)
#define SM_STOREV(p, v, nt) v_store_bf16((p), (v), (nt))
#define SM_NEG_INF ((uint16_t)0xFF80u)
#include "softmax_kernels.h"
#undef SM_SUFFIX
#undef SM_LOADV
#undef SM_STOREV
#undef SM_NEG_INF

#define SM_SUFFIX f16
#define SM_LOADV(p) v_load_f16(p)
#define SM_STOREV(p, v, nt) v_store_f16((p), (v), (nt))
#define SM_NEG_INF ((uint16_t)0xFC00u)
#include "softmax_kernels.h"
#undef SM_T
#undef SM_SUFFIX
#undef SM_LOADV
#undef SM_STOREV
#undef SM_NEG_INF

/* ---- Python glue ---- */

/* Flush-to-zero and denormals-are-zero for the duration of a kernel call, as XNNPACK runs its operators:
 * exponentials of wide-range inputs produce subnormal intermediates (the masked-off lanes of exp(x - max),
 * 2^n below -126), and each subnormal operand or result costs a microcode assist of about 100 cycles (measured:
 * 3-5x slower kernels without). A result flushed to 0 is below the smallest normal, which the protocol counts
 * as exact; half-precision conversions ignore both flags. The caller's MXCSR is restored afterwards. */
#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
typedef unsigned int sm_fp_state;
static inline sm_fp_state sm_fp_enter(void) {
    sm_fp_state saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return saved;
}
static inline void sm_fp_leave(sm_fp_state saved) { _mm_setcsr(saved); }
#else
typedef int sm_fp_state;
static inline sm_fp_state sm_fp_enter(void) { return 0; }
static inline void sm_fp_leave(sm_fp_state saved) { (void)saved; }
#endif
#define SM_RUN(statement)                    \
    Py_BEGIN_ALLOW_THREADS                   \
    sm_fp_state sm_saved = sm_fp_enter();    \
    statement;                               \
    sm_fp_leave(sm_saved);                   \
    Py_END_ALLOW_THREADS

static int sm_check_dtype(int dtype) {
    if (dtype < SM_FLOAT32 || dtype > SM_FLOAT16) {
        PyErr_Format(PyExc_ValueError, "dtype code %d is not 0 (float32), 1 (bfloat16) or 2 (float16)", dtype);
        return 0;
    }
    return 1;
}

#define SM_DISPATCH(dtype, call_f32, call_bf16, call_f16) \
    switch (dtype) {                                      \
    case SM_FLOAT32: call_f32; break;                     \
    case SM_BFLOAT16: call_bf16; break;                   \
    default: call_f16; break;                             \
    }
#define SM_X(T) ((const T *)(uintptr_t)x)
#define SM_Y(T) ((T *)(uintptr_t)y)

static PyObject *py_softmax_rows(PyObject *self, PyObject *args) {
    int algorithm, dtype, nt;
    unsigned long long x, y;
    Py_ssize_t rows, cols;
    if (!PyArg_ParseTuple(args, "iiKKnnp", &algorithm, &dtype, &x, &y, &rows, &cols, &nt)) return NULL;
    if (!sm_check_dtype(dtype)) return NULL;
    if (algorithm < SM_THREE_PASS_RECOMPUTE || algorithm > SM_FUSED) {
        return PyErr_Format(PyExc_ValueError, "algorithm code %d is not in 0..4", algorithm);
    }
    if (rows < 0 || cols < 1) return PyErr_Format(PyExc_ValueError, "need rows >= 0 and cols >= 1");
    int status = 0;
    SM_RUN(
    SM_DISPATCH(dtype,
        status = softmax_rows_f32(algorithm, SM_X(float), SM_Y(float), rows, cols, nt),
        status = softmax_rows_bf16(algorithm, SM_X(uint16_t), SM_Y(uint16_t), rows, cols, nt),
        status = softmax_rows_f16(algorithm, SM_X(uint16_t), SM_Y(uint16_t), rows, cols, nt)))
    if (status) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *py_reduce_max(PyObject *self, PyObject *args) {
    int dtype;
    unsigned long long x;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "iKn", &dtype, &x, &n) || !sm_check_dtype(dtype)) return NULL;
    float result = -INFINITY;
    SM_RUN(
    SM_DISPATCH(dtype, result = reduce_max_f32(SM_X(float), n), result = reduce_max_bf16(SM_X(uint16_t), n),
                result = reduce_max_f16(SM_X(uint16_t), n)))
    return PyFloat_FromDouble(result);
}

static PyObject *py_reduce_sum_exp(PyObject *self, PyObject *args) {
    int dtype;
    unsigned long long x;
    Py_ssize_t n;
    float max;
    if (!PyArg_ParseTuple(args, "iKnf", &dtype, &x, &n, &max) || !sm_check_dtype(dtype)) return NULL;
    double result = 0.0;
    SM_RUN(
    SM_DISPATCH(dtype, result = reduce_sum_exp_f32(SM_X(float), n, max),
                result = reduce_sum_exp_bf16(SM_X(uint16_t), n, max), result = reduce_sum_exp_f16(SM_X(uint16_t), n, max)))
    return PyFloat_FromDouble(result);
}

static PyObject *py_store_exp_scaled(PyObject *self, PyObject *args) {
    int dtype, nt;
    unsigned long long x, y;
    Py_ssize_t n;
    float max, scale;
    if (!PyArg_ParseTuple(args, "iKKnffp", &dtype, &x, &y, &n, &max, &scale, &nt) || !sm_check_dtype(dtype)) return NULL;
    SM_RUN(
    SM_DISPATCH(dtype, store_exp_scaled_f32(SM_X(float), SM_Y(float), n, max, scale, nt),
                store_exp_scaled_bf16(SM_X(uint16_t), SM_Y(uint16_t), n, max, scale, nt),
                store_exp_scaled_f16(SM_X(uint16_t), SM_Y(uint16_t), n, max, scale, nt)))
    Py_RETURN_NONE;
}

static PyObject *py_store_exp_sum(PyObject *self, PyObject *args) {
    int dtype, nt;
    unsigned long long x, y;
    Py_ssize_t n;
    float max;
    if (!PyArg_ParseTuple(args, "iKKnfp", &dtype, &x, &y, &n, &max, &nt) || !sm_check_dtype(dtype)) return NULL;
    double result = 0.0;
    SM_RUN(
    SM_DISPATCH(dtype, result = store_exp_sum_f32(SM_X(float), SM_Y(float), n, max, nt),
                result = store_exp_sum_bf16(SM_X(uint16_t), SM_Y(uint16_t), n, max, nt),
                result = store_exp_sum_f16(SM_X(uint16_t), SM_Y(uint16_t), n, max, nt)))
    return PyFloat_FromDouble(result);
}

static PyObject *py_scale_inplace(PyObject *self, PyObject *args) {
    int dtype, nt;
    unsigned long long y;
    Py_ssize_t n;
    float scale;
    if (!PyArg_ParseTuple(args, "iKnfp", &dtype, &y, &n, &scale, &nt) || !sm_check_dtype(dtype)) return NULL;
    SM_RUN(
    SM_DISPATCH(dtype, scale_inplace_f32(SM_Y(float), n, scale, nt), scale_inplace_bf16(SM_Y(uint16_t), n, scale, nt),
                scale_inplace_f16(SM_Y(uint16_t), n, scale, nt)))
    Py_RETURN_NONE;
}

static PyObject *py_reduce_ext_exp(PyObject *self, PyObject *args) {
    int dtype;
    unsigned long long x;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "iKn", &dtype, &x, &n) || !sm_check_dtype(dtype)) return NULL;
    double mantissa = 0.0, exponent = 0.0;
    SM_RUN(
    SM_DISPATCH(dtype, reduce_ext_exp_f32(SM_X(float), n, &mantissa, &exponent),
                reduce_ext_exp_bf16(SM_X(uint16_t), n, &mantissa, &exponent),
                reduce_ext_exp_f16(SM_X(uint16_t), n, &mantissa, &exponent)))
    return Py_BuildValue("(dd)", mantissa, exponent);
}

static PyObject *py_store_ext_exp_scaled(PyObject *self, PyObject *args) {
    int dtype, nt;
    unsigned long long x, y;
    Py_ssize_t n;
    float inverse_mantissa, exponent;
    if (!PyArg_ParseTuple(args, "iKKnffp", &dtype, &x, &y, &n, &inverse_mantissa, &exponent, &nt) ||
        !sm_check_dtype(dtype))
        return NULL;
    SM_RUN(
    SM_DISPATCH(dtype, store_ext_exp_scaled_f32(SM_X(float), SM_Y(float), n, inverse_mantissa, exponent, nt),
                store_ext_exp_scaled_bf16(SM_X(uint16_t), SM_Y(uint16_t), n, inverse_mantissa, exponent, nt),
                store_ext_exp_scaled_f16(SM_X(uint16_t), SM_Y(uint16_t), n, inverse_mantissa, exponent, nt)))
    Py_RETURN_NONE;
}

static PyObject *py_reduce_online(PyObject *self, PyObject *args) {
    int dtype;
    unsigned long long x;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "iKn", &dtype, &x, &n) || !sm_check_dtype(dtype)) return NULL;
    double max = 0.0, sum = 0.0;
    SM_RUN(
    SM_DISPATCH(dtype, reduce_online_f32(SM_X(float), n, &max, &sum), reduce_online_bf16(SM_X(uint16_t), n, &max, &sum),
                reduce_online_f16(SM_X(uint16_t), n, &max, &sum)))
    return Py_BuildValue("(dd)", max, sum);
}

/* memcpy of n bytes (glibc picks its own strategy, non-temporal stores for large copies on most CPUs). */
static PyObject *py_memcpy(PyObject *self, PyObject *args) {
    unsigned long long x, y;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "KKn", &y, &x, &n)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    memcpy((void *)(uintptr_t)y, (const void *)(uintptr_t)x, (size_t)n);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* The instruction sets this CPU and OS support (x86 with GCC or Clang; elsewhere an empty dict). */
static PyObject *py_cpu_features(PyObject *self, PyObject *unused) {
    PyObject *features = PyDict_New();
    if (!features) return NULL;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
#define SM_FEATURE(name)                                                                    \
    if (PyDict_SetItemString(features, name, __builtin_cpu_supports(name) ? Py_True : Py_False) < 0) { \
        Py_DECREF(features);                                                                \
        return NULL;                                                                        \
    }
    SM_FEATURE("avx2")
    SM_FEATURE("fma")
    SM_FEATURE("f16c")
    SM_FEATURE("avx512f")
    SM_FEATURE("avx512bw")
#undef SM_FEATURE
#endif
    return features;
}

static PyMethodDef sm_methods[] = {
    {"softmax_rows", py_softmax_rows, METH_VARARGS,
     "softmax_rows(algorithm, dtype, x_ptr, y_ptr, rows, cols, nontemporal): softmax of each row, every pass over all rows"},
    {"reduce_max", py_reduce_max, METH_VARARGS, "reduce_max(dtype, x_ptr, n) -> max"},
    {"reduce_sum_exp", py_reduce_sum_exp, METH_VARARGS, "reduce_sum_exp(dtype, x_ptr, n, max) -> sum of exp(x - max)"},
    {"store_exp_scaled", py_store_exp_scaled, METH_VARARGS,
     "store_exp_scaled(dtype, x_ptr, y_ptr, n, max, scale, nontemporal): y = exp(x - max) * scale"},
    {"store_exp_sum", py_store_exp_sum, METH_VARARGS,
     "store_exp_sum(dtype, x_ptr, y_ptr, n, max, nontemporal) -> sum: y = exp(x - max)"},
    {"scale_inplace", py_scale_inplace, METH_VARARGS, "scale_inplace(dtype, y_ptr, n, scale, nontemporal): y *= scale"},
    {"reduce_ext_exp", py_reduce_ext_exp, METH_VARARGS,
     "reduce_ext_exp(dtype, x_ptr, n) -> (mantissa, exponent): sum of exp(x) = mantissa * 2^exponent"},
    {"store_ext_exp_scaled", py_store_ext_exp_scaled, METH_VARARGS,
     "store_ext_exp_scaled(dtype, x_ptr, y_ptr, n, inverse_mantissa, exponent, nontemporal): y = exp(x) * inverse_mantissa * 2^-exponent"},
    {"reduce_online", py_reduce_online, METH_VARARGS, "reduce_online(dtype, x_ptr, n) -> (max, sum of exp(x - max))"},
    {"memcpy", py_memcpy, METH_VARARGS, "memcpy(y_ptr, x_ptr, nbytes)"},
    {"cpu_features", py_cpu_features, METH_NOARGS, "cpu_features() -> {feature: supported}"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sm_module = {
    PyModuleDef_HEAD_INIT, SM_STR(SOFTMAX_MODULE),
    "Compiled CPU softmax kernels (" SM_ISA_NAME "); use harness_softmax.cpu, which dispatches and threads.", -1,
    sm_methods, NULL, NULL, NULL, NULL,
};

/* The codes softmax_rows takes, by name: the only declaration of them. harness_softmax.cpu reads these dicts,
 * so Python cannot call one kernel while meaning another. */
static const struct { const char *name; int code; } sm_algorithm_codes[] = {
    {"three-pass-recompute", SM_THREE_PASS_RECOMPUTE},
    {"three-pass-reload", SM_THREE_PASS_RELOAD},
    {"two-pass", SM_TWO_PASS},
    {"online", SM_ONLINE},
    {"fused", SM_FUSED},
};
static const struct { const char *name; int code; } sm_dtype_codes[] = {
    {"float32", SM_FLOAT32},
    {"bfloat16", SM_BFLOAT16},
    {"float16", SM_FLOAT16},
};

static int sm_add_codes(PyObject *module, const char *attribute, size_t count, const char *const *names,
                        const int *codes) {
    PyObject *table = PyDict_New();
    if (!table) return -1;
    for (size_t i = 0; i < count; i++) {
        PyObject *code = PyLong_FromLong(codes[i]);
        if (!code || PyDict_SetItemString(table, names[i], code) < 0) {
            Py_XDECREF(code);
            Py_DECREF(table);
            return -1;
        }
        Py_DECREF(code);
    }
    if (PyModule_AddObject(module, attribute, table) < 0) { /* steals the reference only on success */
        Py_DECREF(table);
        return -1;
    }
    return 0;
}

#define SM_COUNT(table) (sizeof(table) / sizeof((table)[0]))

PyMODINIT_FUNC SM_PASTE(PyInit_, SOFTMAX_MODULE)(void) {
    PyObject *module = PyModule_Create(&sm_module);
    if (!module) return NULL;
    const char *algorithm_names[SM_COUNT(sm_algorithm_codes)], *dtype_names[SM_COUNT(sm_dtype_codes)];
    int algorithm_codes[SM_COUNT(sm_algorithm_codes)], dtype_codes[SM_COUNT(sm_dtype_codes)];
    for (size_t i = 0; i < SM_COUNT(sm_algorithm_codes); i++) {
        algorithm_names[i] = sm_algorithm_codes[i].name;
        algorithm_codes[i] = sm_algorithm_codes[i].code;
    }
    for (size_t i = 0; i < SM_COUNT(sm_dtype_codes); i++) {
        dtype_names[i] = sm_dtype_codes[i].name;
        dtype_codes[i] = sm_dtype_codes[i].code;
    }
    if (PyModule_AddStringConstant(module, "ISA", SM_ISA_NAME) < 0 ||
        PyModule_AddIntConstant(module, "VECTOR_FLOATS", SM_W) < 0 ||
        sm_add_codes(module, "ALGORITHM_CODES", SM_COUNT(sm_algorithm_codes), algorithm_names, algorithm_codes) < 0 ||
        sm_add_codes(module, "DTYPE_CODES", SM_COUNT(sm_dtype_codes), dtype_names, dtype_codes) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
