/* The softmax passes for one storage type, written once against simd.h; softmax_cpu.c includes this file
 * three times (float32, bfloat16, float16) with SM_T, SM_SUFFIX, SM_LOADV, SM_STOREV and SM_NEG_INF set.
 * Arithmetic is float32 whatever the storage type.
 *
 * Traffic per element of a row of n elements stored in b bytes (what each pass must move):
 *
 *   pass                          reads  writes   used by
 *   reduce_max                    n b             three-pass recompute, three-pass reload
 *   reduce_sum_exp                n b             three-pass recompute
 *   store_exp_sum                 n b    n b      three-pass reload (stores exp(x - max) to the output)
 *   scale_inplace                 n b    n b      three-pass reload (reloads the stored exponentials)
 *   reduce_ext_exp                n b             two-pass (sum as mantissa * 2^exponent, no max)
 *   store_ext_exp_scaled          n b    n b      two-pass
 *   reduce_online                 n b             online (running max, rescaled sum)
 *   store_exp_scaled              n b    n b      three-pass recompute, online
 *   fused_row                     n b    n b      fused rows (max, exp and scale of one row in L1/L2)
 *
 * Every loop keeps SM_UNROLL independent accumulators (a vector each), so reductions are not one serial
 * dependency chain and the float32 sums are split into SM_UNROLL * SM_W partial sums, folded into doubles every
 * SM_FLUSH_BLOCKS blocks (softmax_cpu.c) so long rows stay accurate. The last partial vector
 * of a row is loaded from a buffer padded with -inf, which every pass maps to a zero term. Stores are
 * non-temporal (streaming, no read-for-ownership of the output line) when ``nt`` is set; the first elements
 * up to the vector alignment are then written through the same padded-buffer path.
 */

#define SM_CAT_(a, b) a##_##b
#define SM_CAT(a, b) SM_CAT_(a, b)
#define FN(name) SM_CAT(name, SM_SUFFIX)
#define SM_BLOCK (SM_W * SM_UNROLL)
#define SM_VECTOR_BYTES (SM_W * sizeof(SM_T))

static inline vf FN(load_partial)(const SM_T *p, size_t k) {
    SM_T buffer[SM_W];
    for (size_t i = 0; i < SM_W; i++) buffer[i] = SM_NEG_INF;
    memcpy(buffer, p, k * sizeof(SM_T));
    return SM_LOADV(buffer);
}

static inline void FN(store_partial)(SM_T *p, vf v, size_t k) {
    SM_T buffer[SM_W];
    SM_STOREV(buffer, v, 0);
    memcpy(p, buffer, k * sizeof(SM_T));
}

/* Elements before y + head is aligned for a (streaming) vector store. */
static inline size_t FN(aligned_head)(const SM_T *y, size_t n, int nt) {
    if (!nt || SM_W == 1) return 0;
    size_t misaligned = (size_t)((uintptr_t)y % SM_VECTOR_BYTES);
    size_t head = misaligned ? (SM_VECTOR_BYTES - misaligned) / sizeof(SM_T) : 0;
    return head < n ? head : n;
}

/* Prefetch the block SM_PREFETCH_BYTES ahead of x + i (one prefetch per 64-byte line). */
static inline void FN(prefetch_block)(const SM_T *p) {
    for (size_t offset = 0; offset < SM_BLOCK * sizeof(SM_T); offset += 64)
        SM_PREFETCH((const char *)p + SM_PREFETCH_BYTES + offset);
}

static float FN(reduce_max)(const SM_T *x, size_t n) {
    vf m[SM_UNROLL];
    for (int u = 0; u < SM_UNROLL; u++) m[u] = v_set1(-INFINITY);
    size_t i = 0;
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        FN(prefetch_block)(x + i);
        for (int u = 0; u < SM_UNROLL; u++) m[u] = v_max(SM_LOADV(x + i + u * SM_W), m[u]);
    }
    for (; i + SM_W <= n; i += SM_W) m[0] = v_max(SM_LOADV(x + i), m[0]);
    if (i < n) m[0] = v_max(FN(load_partial)(x + i, n - i), m[0]);
    for (int u = 1; u < SM_UNROLL; u++) m[0] = v_max(m[u], m[0]);
    return sm_hmax(m[0]);
}

/* sum of exp(x - max): the middle pass of three-pass recompute. */
static double FN(reduce_sum_exp)(const SM_T *x, size_t n, float max) {
    const vf vmax = v_set1(max), one = v_set1(1.0f);
    vf acc[SM_UNROLL];
    for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_set1(0.0f);
    double outer[SM_LANES] = {0};
    size_t i = 0, blocks = 0;
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        FN(prefetch_block)(x + i);
        for (int u = 0; u < SM_UNROLL; u++)
            acc[u] = v_add(acc[u], v_exp_minus_scaled(v_sub(SM_LOADV(x + i + u * SM_W), vmax), one));
        if (++blocks == SM_FLUSH_BLOCKS) blocks = 0, sm_flush_sum(outer, acc);
    }
    for (; i + SM_W <= n; i += SM_W) acc[0] = v_add(acc[0], v_exp_minus_scaled(v_sub(SM_LOADV(x + i), vmax), one));
    if (i < n) acc[1 % SM_UNROLL] = v_add(acc[1 % SM_UNROLL], v_exp_minus_scaled(v_sub(FN(load_partial)(x + i, n - i), vmax), one));
    sm_flush_sum(outer, acc);
    return sm_total(outer);
}

/* y = exp(x - max) * scale: the output pass of three-pass recompute and online. */
static void FN(store_exp_scaled)(const SM_T *x, SM_T *y, size_t n, float max, float scale, int nt) {
    const vf vmax = v_set1(max), vscale = v_set1(scale);
    size_t i = FN(aligned_head)(y, n, nt);
    if (i) FN(store_partial)(y, v_exp_minus_scaled(v_sub(FN(load_partial)(x, i), vmax), vscale), i);
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        FN(prefetch_block)(x + i);
        for (int u = 0; u < SM_UNROLL; u++)
            SM_STOREV(y + i + u * SM_W, v_exp_minus_scaled(v_sub(SM_LOADV(x + i + u * SM_W), vmax), vscale), nt);
    }
    for (; i + SM_W <= n; i += SM_W) SM_STOREV(y + i, v_exp_minus_scaled(v_sub(SM_LOADV(x + i), vmax), vscale), nt);
    if (i < n) FN(store_partial)(y + i, v_exp_minus_scaled(v_sub(FN(load_partial)(x + i, n - i), vmax), vscale), n - i);
    if (nt) v_fence();
}

/* y = exp(x - max), returning the sum: the middle pass of three-pass reload. */
static double FN(store_exp_sum)(const SM_T *x, SM_T *y, size_t n, float max, int nt) {
    const vf vmax = v_set1(max), one = v_set1(1.0f);
    vf acc[SM_UNROLL];
    for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_set1(0.0f);
    size_t i = FN(aligned_head)(y, n, nt);
    if (i) {
        vf f = v_exp_minus_scaled(v_sub(FN(load_partial)(x, i), vmax), one);
        FN(store_partial)(y, f, i);
        acc[0] = f;
    }
    double outer[SM_LANES] = {0};
    size_t blocks = 0;
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        FN(prefetch_block)(x + i);
        for (int u = 0; u < SM_UNROLL; u++) {
            vf f = v_exp_minus_scaled(v_sub(SM_LOADV(x + i + u * SM_W), vmax), one);
            SM_STOREV(y + i + u * SM_W, f, nt);
            acc[u] = v_add(acc[u], f);
        }
        if (++blocks == SM_FLUSH_BLOCKS) blocks = 0, sm_flush_sum(outer, acc);
    }
    for (; i + SM_W <= n; i += SM_W) {
        vf f = v_exp_minus_scaled(v_sub(SM_LOADV(x + i), vmax), one);
        SM_STOREV(y + i, f, nt);
        acc[0] = v_add(acc[0], f);
    }
    if (i < n) {
        vf f = v_exp_minus_scaled(v_sub(FN(load_partial)(x + i, n - i), vmax), one);
        FN(store_partial)(y + i, f, n - i);
        acc[1 % SM_UNROLL] = v_add(acc[1 % SM_UNROLL], f);
    }
    if (nt) v_fence();
    sm_flush_sum(outer, acc);
    return sm_total(outer);
}

/* y *= scale in place: the last pass of three-pass reload. */
static void FN(scale_inplace)(SM_T *y, size_t n, float scale, int nt) {
    const vf vscale = v_set1(scale);
    size_t i = FN(aligned_head)(y, n, nt);
    if (i) FN(store_partial)(y, v_mul(FN(load_partial)(y, i), vscale), i);
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        FN(prefetch_block)(y + i);
        for (int u = 0; u < SM_UNROLL; u++)
            SM_STOREV(y + i + u * SM_W, v_mul(SM_LOADV(y + i + u * SM_W), vscale), nt);
    }
    for (; i + SM_W <= n; i += SM_W) SM_STOREV(y + i, v_mul(SM_LOADV(y + i), vscale), nt);
    if (i < n) FN(store_partial)(y + i, v_mul(FN(load_partial)(y + i, n - i), vscale), n - i);
    if (nt) v_fence();
}

/* sum of exp(x) as mantissa * 2^exponent without a max pass (Dukhan & Ablavatski's first pass, XNNPACK's
 * f32-raddextexp): each term is p * 2^n with p in [0.70, 1.42]; a block's terms are scaled to the block's
 * largest n (per lane) and added to accumulators kept at the running largest exponent acc_e, which are
 * rescaled by 2^(acc_e - new) when a block raises it. Terms 2^-127 below the largest are dropped. */
static void FN(reduce_ext_exp)(const SM_T *x, size_t n, double *mantissa, double *exponent) {
    vf acc[SM_UNROLL];
    for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_set1(0.0f);
    vf acc_e = v_set1(-1e30f);
    double outer[SM_LANES] = {0}, outer_e[SM_W];
    for (int l = 0; l < SM_W; l++) outer_e[l] = -1e30;
    size_t i = 0, blocks = 0;
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        vf p[SM_UNROLL], e[SM_UNROLL];
        FN(prefetch_block)(x + i);
        for (int u = 0; u < SM_UNROLL; u++) p[u] = v_ext_exp(SM_LOADV(x + i + u * SM_W), &e[u]);
        vf block_e = e[0]; /* the block's max first: only one max sits on the loop-carried chain of acc_e */
        for (int u = 1; u < SM_UNROLL; u++) block_e = v_max(e[u], block_e);
        block_e = v_max(block_e, acc_e);
        if (v_any_gt(block_e, acc_e)) { /* rare once the row's largest exponents have been seen */
            vf rescale = v_pow2_flush(v_sub(acc_e, block_e));
            for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_mul(acc[u], rescale);
            acc_e = block_e;
        }
        for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_fma(p[u], v_pow2_flush(v_sub(e[u], acc_e)), acc[u]);
        if (++blocks == SM_FLUSH_BLOCKS) blocks = 0, sm_flush_ext(outer, outer_e, acc, acc_e);
    }
    for (; i < n; i += SM_W) {
        vf e;
        vf p = v_ext_exp(i + SM_W <= n ? SM_LOADV(x + i) : FN(load_partial)(x + i, n - i), &e);
        vf block_e = v_max(e, acc_e);
        vf rescale = v_pow2_flush(v_sub(acc_e, block_e));
        for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_mul(acc[u], rescale);
        acc[0] = v_fma(p, v_pow2_flush(v_sub(e, block_e)), acc[0]);
        acc_e = block_e;
    }
    sm_flush_ext(outer, outer_e, acc, acc_e);
    sm_combine_ext(outer, outer_e, mantissa, exponent);
}

/* y = exp(x) / sum = (p * inverse_mantissa) * 2^(n - exponent): the two-pass output pass (XNNPACK's
 * f32-vscaleextexp), with the power of two applied so that results round correctly down to FLT_MIN. */
static void FN(store_ext_exp_scaled)(const SM_T *x, SM_T *y, size_t n, float inverse_mantissa, float exponent, int nt) {
    const vf vinverse = v_set1(inverse_mantissa), vexponent = v_set1(exponent);
#define SM_EXT_OUTPUT(vx) sm_ext_output((vx), vinverse, vexponent)
    size_t i = FN(aligned_head)(y, n, nt);
    if (i) FN(store_partial)(y, SM_EXT_OUTPUT(FN(load_partial)(x, i)), i);
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        FN(prefetch_block)(x + i);
        for (int u = 0; u < SM_UNROLL; u++) SM_STOREV(y + i + u * SM_W, SM_EXT_OUTPUT(SM_LOADV(x + i + u * SM_W)), nt);
    }
    for (; i + SM_W <= n; i += SM_W) SM_STOREV(y + i, SM_EXT_OUTPUT(SM_LOADV(x + i)), nt);
    if (i < n) FN(store_partial)(y + i, SM_EXT_OUTPUT(FN(load_partial)(x + i, n - i)), n - i);
#undef SM_EXT_OUTPUT
    if (nt) v_fence();
}

/* Running max and sum of exp(x - running max) in one pass (Milakov & Gimelshein), per lane and per block:
 * the block's max is taken first, so the accumulators are rescaled once per block, not once per element. */
static void FN(reduce_online)(const SM_T *x, size_t n, double *max, double *sum) {
    const vf one = v_set1(1.0f);
    vf acc[SM_UNROLL];
    for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_set1(0.0f);
    vf running = v_set1(-INFINITY);
    double outer[SM_LANES] = {0}, outer_max[SM_W];
    for (int l = 0; l < SM_W; l++) outer_max[l] = -INFINITY;
    size_t i = 0, blocks = 0;
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        vf v[SM_UNROLL];
        FN(prefetch_block)(x + i);
        for (int u = 0; u < SM_UNROLL; u++) v[u] = SM_LOADV(x + i + u * SM_W);
        vf block_max = v[0]; /* the block's max first: one max on the loop-carried chain of running */
        for (int u = 1; u < SM_UNROLL; u++) block_max = v_max(v[u], block_max);
        block_max = v_max(block_max, running);
        if (v_any_gt(block_max, running)) { /* rare once the row's largest values have been seen */
            vf rescale = v_exp_minus_scaled(v_sub(running, block_max), one); /* -inf - -inf: NaN, mapped to 0 */
            for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_mul(acc[u], rescale);
            running = block_max;
        }
        for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_add(acc[u], v_exp_minus_scaled(v_sub(v[u], running), one));
        if (++blocks == SM_FLUSH_BLOCKS) blocks = 0, sm_flush_online(outer, outer_max, acc, running);
    }
    for (; i < n; i += SM_W) {
        vf v = i + SM_W <= n ? SM_LOADV(x + i) : FN(load_partial)(x + i, n - i);
        vf block_max = v_max(v, running);
        vf rescale = v_exp_minus_scaled(v_sub(running, block_max), one);
        for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_mul(acc[u], rescale);
        acc[0] = v_add(acc[0], v_exp_minus_scaled(v_sub(v, block_max), one));
        running = block_max;
    }
    sm_flush_online(outer, outer_max, acc, running);
    sm_combine_online(outer, outer_max, max, sum);
}

/* One row read once and written once: max, then exp(x - max) into an L1/L2 scratch row (float32, so the
 * output line is never read for ownership and 16-bit outputs are rounded once), then the scaled output. */
static void FN(fused_row)(const SM_T *x, SM_T *y, size_t n, float *scratch, int nt) {
    const vf vmax = v_set1(FN(reduce_max)(x, n)), one = v_set1(1.0f);
    vf acc[SM_UNROLL];
    for (int u = 0; u < SM_UNROLL; u++) acc[u] = v_set1(0.0f);
    double outer[SM_LANES] = {0};
    size_t i = 0, blocks = 0;
    for (; i + SM_BLOCK <= n; i += SM_BLOCK) {
        /* the next row (contiguous after this one) streams in while this one is computed from L1/L2, so the
         * memory phase of a row overlaps the compute phase of the previous one */
        for (size_t offset = 0; offset < SM_BLOCK * sizeof(SM_T); offset += 64)
            SM_PREFETCH((const char *)(x + n + i) + offset);
        for (int u = 0; u < SM_UNROLL; u++) {
            vf f = v_exp_minus_scaled(v_sub(SM_LOADV(x + i + u * SM_W), vmax), one);
            v_store_f32(scratch + i + u * SM_W, f, 0);
            acc[u] = v_add(acc[u], f);
        }
        if (++blocks == SM_FLUSH_BLOCKS) blocks = 0, sm_flush_sum(outer, acc);
    }
    for (; i < n; i += SM_W) { /* scratch has room for a whole last vector; padded lanes hold 0 */
        vf f = v_exp_minus_scaled(v_sub(i + SM_W <= n ? SM_LOADV(x + i) : FN(load_partial)(x + i, n - i), vmax), one);
        v_store_f32(scratch + i, f, 0);
        acc[0] = v_add(acc[0], f);
    }
    sm_flush_sum(outer, acc);
    const vf vscale = v_set1((float)(1.0 / sm_total(outer)));
    i = FN(aligned_head)(y, n, nt);
    if (i) FN(store_partial)(y, v_mul(v_load_f32(scratch), vscale), i);
    for (; i + SM_W <= n; i += SM_W) SM_STOREV(y + i, v_mul(v_load_f32(scratch + i), vscale), nt);
    if (i < n) FN(store_partial)(y + i, v_mul(v_load_f32(scratch + i), vscale), n - i);
    if (nt) v_fence();
}

/* A batch of rows (row-major, contiguous). Every algorithm but fused makes each of its passes over the whole
 * batch before the next pass, so a batch larger than the cache moves the algorithm's full traffic; fused
 * finishes each row while it is in cache. Returns 0, or -1 where memory for per-row statistics is missing. */
static int FN(softmax_rows)(int algorithm, const SM_T *x, SM_T *y, size_t rows, size_t cols, int nt) {
    if (algorithm == SM_FUSED) {
        float *scratch = (float *)sm_aligned_alloc((cols + SM_W) * sizeof(float));
        if (!scratch) return -1;
        for (size_t r = 0; r < rows; r++) FN(fused_row)(x + r * cols, y + r * cols, cols, scratch, nt);
        sm_aligned_free(scratch);
        return 0;
    }
    float *stats = (float *)malloc(2 * rows * sizeof(float));
    if (!stats) return -1;
    float *first = stats, *second = stats + rows;
    switch (algorithm) {
    case SM_THREE_PASS_RECOMPUTE:
        for (size_t r = 0; r < rows; r++) first[r] = FN(reduce_max)(x + r * cols, cols);
        for (size_t r = 0; r < rows; r++) second[r] = (float)(1.0 / FN(reduce_sum_exp)(x + r * cols, cols, first[r]));
        for (size_t r = 0; r < rows; r++) FN(store_exp_scaled)(x + r * cols, y + r * cols, cols, first[r], second[r], nt);
        break;
    case SM_THREE_PASS_RELOAD:
        for (size_t r = 0; r < rows; r++) first[r] = FN(reduce_max)(x + r * cols, cols);
        for (size_t r = 0; r < rows; r++)
            second[r] = (float)(1.0 / FN(store_exp_sum)(x + r * cols, y + r * cols, cols, first[r], nt));
        for (size_t r = 0; r < rows; r++) FN(scale_inplace)(y + r * cols, cols, second[r], nt);
        break;
    case SM_TWO_PASS:
        for (size_t r = 0; r < rows; r++) {
            double mantissa, exponent;
            FN(reduce_ext_exp)(x + r * cols, cols, &mantissa, &exponent);
            first[r] = (float)(1.0 / mantissa);
            second[r] = (float)exponent;
        }
        for (size_t r = 0; r < rows; r++) FN(store_ext_exp_scaled)(x + r * cols, y + r * cols, cols, first[r], second[r], nt);
        break;
    case SM_ONLINE:
        for (size_t r = 0; r < rows; r++) {
            double max, sum;
            FN(reduce_online)(x + r * cols, cols, &max, &sum);
            first[r] = (float)max;
            second[r] = (float)(1.0 / sum);
        }
        for (size_t r = 0; r < rows; r++) FN(store_exp_scaled)(x + r * cols, y + r * cols, cols, first[r], second[r], nt);
        break;
    }
    free(stats);
    return 0;
}

#undef FN
#undef SM_CAT
#undef SM_CAT_
#undef SM_BLOCK
#undef SM_VECTOR_BYTES
