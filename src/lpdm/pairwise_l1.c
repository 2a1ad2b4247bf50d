/* Pairwise l1 distances of the rows of a float32 matrix, and their gradient.
 *
 * Plain C (no Python or torch headers), so it compiles in well under a second;
 * lpdm.kernels builds it on first use and calls it through ctypes. z is [m, n, d]
 * row-major: m independent matrices (the members of a population), one after another.
 *
 *   lpdm_l1_forward:  out[i, j] = sum_k |z[i, k] - z[j, k]|            out is [m, n, n]
 *   lpdm_l1_backward: grad[i, k] = sum_j (g[i, j] + g[j, i]) sign(z[i, k] - z[j, k])
 *                     with sign(0) = 0, as torch.cdist's gradient   g [m, n, n], grad [m, n, d]
 *   lpdm_l1_backward_full: the same gradient by the previous backward, which visits every
 *                     ordered pair; kept as the reference of tests and `lpdm bench`.
 *   lpdm_l1_layer_loss: a layer's distance-matching loss per matrix,
 *                     loss = ||mask . (target - D(z) / divisor)||_F, and its gradient
 *                     [m, n, d] (zero where loss = 0), without making any [n, n] matrix but
 *                     a scratch of pair weights: pass 1 computes the distances of the pairs
 *                     i < j, their differences to the target and the sum of squares; pass 2
 *                     is the backward with w_ij = -(e_ij + e_ji) / (loss * divisor).
 *
 * Both passes work on tiles of T rows so that every row loaded from memory serves T rows
 * of the other side (the inner loops over features vectorise); narrow rows (d < NARROW)
 * vectorise over rows instead. Both passes visit each unordered pair {i, j} once: the
 * forward writes both halves of the symmetric matrix, the backward adds w_ij sign(z_i - z_j)
 * to row i and subtracts it from row j. The forward is parallel over rows with OpenMP when
 * threads > 1 (and compiled with it), handing rows out dynamically so that a thread
 * descheduled on a busy machine holds up only its own rows; the backward hands them out
 * statically and sums one gradient per thread in thread order, so that its rounding does
 * not depend on the schedule. With threads == 1 no OpenMP region is entered. The caller
 * allocates all scratch memory (*_scratch functions).
 *
 * The loops marked "hot loop: NAME" must vectorise on every x86-64 level from v2 (SSE4.2)
 * up: lpdm.kernels.vectorization_report reads the compiler's verdict on them, `lpdm bench`
 * prints it, and tests/test_kernels.py fails if one is left scalar. Keep their bodies free
 * of conditionals (gcc treats a select as control flow where there are no mask registers).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID omp_get_thread_num()
#else
#define THREAD_ID 0
#endif

#define T 4       /* rows per tile */
#define NARROW 32 /* below this width the forward pass vectorises over rows */
#define PAGE_FLOATS 1024 /* 4 KiB */

static inline int64_t clamp_row(int64_t r, int64_t n) { return r < n ? r : n - 1; }

/* Distances s[r][c] between rows i0 + r and j0 + c (clamped to n), r, c < T. */
static inline void tile_distances(const float *z, int64_t n, int64_t d, int64_t i0, int64_t j0,
                                  float s[T][T]) {
    const float *a0 = z + clamp_row(i0, n) * d, *a1 = z + clamp_row(i0 + 1, n) * d;
    const float *a2 = z + clamp_row(i0 + 2, n) * d, *a3 = z + clamp_row(i0 + 3, n) * d;
    const float *b0 = z + clamp_row(j0, n) * d, *b1 = z + clamp_row(j0 + 1, n) * d;
    const float *b2 = z + clamp_row(j0 + 2, n) * d, *b3 = z + clamp_row(j0 + 3, n) * d;
    float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
    float s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
    /* hot loop: forward tile */
#pragma omp simd reduction(+ : s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, \
                               s30, s31, s32, s33)
    for (int64_t k = 0; k < d; k++) {
        const float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
        const float y0 = b0[k], y1 = b1[k], y2 = b2[k], y3 = b3[k];
        s00 += __builtin_fabsf(x0 - y0); s01 += __builtin_fabsf(x0 - y1);
        s02 += __builtin_fabsf(x0 - y2); s03 += __builtin_fabsf(x0 - y3);
        s10 += __builtin_fabsf(x1 - y0); s11 += __builtin_fabsf(x1 - y1);
        s12 += __builtin_fabsf(x1 - y2); s13 += __builtin_fabsf(x1 - y3);
        s20 += __builtin_fabsf(x2 - y0); s21 += __builtin_fabsf(x2 - y1);
        s22 += __builtin_fabsf(x2 - y2); s23 += __builtin_fabsf(x2 - y3);
        s30 += __builtin_fabsf(x3 - y0); s31 += __builtin_fabsf(x3 - y1);
        s32 += __builtin_fabsf(x3 - y2); s33 += __builtin_fabsf(x3 - y3);
    }
    const float tile[T][T] = {{s00, s01, s02, s03}, {s10, s11, s12, s13},
                              {s20, s21, s22, s23}, {s30, s31, s32, s33}};
    memcpy(s, tile, sizeof tile);
}

/* Distances between rows i0..i0+T-1 and j0..j0+T-1 (clamped to n), written both ways. */
static void forward_tile(const float *z, float *out, int64_t n, int64_t d, int64_t i0,
                         int64_t j0) {
    float s[T][T];
    tile_distances(z, n, d, i0, j0, s);
    for (int64_t r = 0; r < T && i0 + r < n; r++)
        for (int64_t c = 0; c < T && j0 + c < n; c++) {
            const float v = (i0 + r == j0 + c) ? 0.0f : s[r][c];
            out[(i0 + r) * n + j0 + c] = v;
            out[(j0 + c) * n + i0 + r] = v;
        }
}

static void forward_rows(const float *z, float *out, int64_t n, int64_t d, int64_t i0) {
    for (int64_t j0 = i0; j0 < n; j0 += T) forward_tile(z, out, n, d, i0, j0);
}

/* Narrow rows (d < NARROW): vectorise over j instead, on the transposed zt [d, n]. Fills
 * the upper triangle of row i; the caller mirrors it. */
static void forward_narrow_row(const float *zt, float *out, int64_t n, int64_t d, int64_t i) {
    float *row = out + i * n;
    for (int64_t j = i; j < n; j++) row[j] = 0.0f;
    for (int64_t k = 0; k < d; k++) {
        const float a = zt[k * n + i];
        const float *b = zt + k * n;
        /* hot loop: forward narrow */
#pragma omp simd
        for (int64_t j = i + 1; j < n; j++) row[j] += __builtin_fabsf(a - b[j]);
    }
}

static void forward_narrow(const float *z, float *out, int64_t n, int64_t d, int threads,
                           float *zt) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < d; k++) zt[k * n + i] = z[i * d + k];
    if (threads > 1) {
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads)
        for (int64_t i = 0; i < n; i++) forward_narrow_row(zt, out, n, d, i);
    } else {
        for (int64_t i = 0; i < n; i++) forward_narrow_row(zt, out, n, d, i);
    }
    for (int64_t i = 1; i < n; i++)
        for (int64_t j = 0; j < i; j++) out[i * n + j] = out[j * n + i];
}

/* One [n, d] matrix. scratch: n * d floats, used when d < NARROW. */
static void forward_one(const float *z, float *out, int64_t n, int64_t d, int threads,
                        float *scratch) {
    if (d < NARROW) {
        forward_narrow(z, out, n, d, threads, scratch);
    } else if (threads > 1) {
#pragma omp parallel for schedule(dynamic, 2) num_threads(threads)
        for (int64_t i0 = 0; i0 < n; i0 += T) forward_rows(z, out, n, d, i0);
    } else {
        for (int64_t i0 = 0; i0 < n; i0 += T) forward_rows(z, out, n, d, i0);
    }
}

/* s * sign(t), sign(0) = 0. Written without conditionals: a select here is "control flow
 * in loop" to gcc's vectoriser on targets without mask registers (AVX2), which then leaves
 * the backward pass scalar. */
static inline float signed_weight(float t, float s) {
    return s * (float)((t > 0.0f) - (t < 0.0f));
}

/* s * sign(x - y) as signed_weight, one subtraction fewer (x > y if and only if x - y > 0
 * under IEEE gradual underflow). */
static inline float pair_weight(float x, float y, float s) {
    return s * (float)((x > y) - (x < y));
}

/* Reference backward (every ordered pair): grad rows i0..i0+T-1 (clamped rows are
 * computed but not stored). */
static void backward_full_rows(const float *z, const float *g, float *grad, int64_t n,
                               int64_t d, int64_t i0,
                               float *acc /* [T * d + PAGE_FLOATS] scratch */) {
    const int64_t rows = (n - i0) < T ? (n - i0) : T;
    const float *a0 = z + clamp_row(i0, n) * d, *a1 = z + clamp_row(i0 + 1, n) * d;
    const float *a2 = z + clamp_row(i0 + 2, n) * d, *a3 = z + clamp_row(i0 + 3, n) * d;
    /* place the accumulator rows at the same offsets within a 4 KiB page as the rows they
     * accumulate for, so their stores never falsely alias the loads of other rows */
    acc += (((uintptr_t)a0 - (uintptr_t)acc) & (PAGE_FLOATS * sizeof(float) - 1)) / sizeof(float);
    float *g0 = acc, *g1 = acc + d, *g2 = acc + 2 * d, *g3 = acc + 3 * d;
    memset(acc, 0, (size_t)(T * d) * sizeof(float));
    for (int64_t j = 0; j < n; j++) {
        float w[T];
        for (int64_t r = 0; r < T; r++) {
            const int64_t i = clamp_row(i0 + r, n);
            w[r] = (i == j) ? 0.0f : g[i * n + j] + g[j * n + i];
        }
        const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
        const float *b = z + j * d;
        /* hot loop: backward full */
#pragma omp simd
        for (int64_t k = 0; k < d; k++) {
            const float y = b[k];
            g0[k] += signed_weight(a0[k] - y, w0);
            g1[k] += signed_weight(a1[k] - y, w1);
            g2[k] += signed_weight(a2[k] - y, w2);
            g3[k] += signed_weight(a3[k] - y, w3);
        }
    }
    memcpy(grad + i0 * d, acc, (size_t)(rows * d) * sizeof(float));
}

/* One [n, d] matrix. scratch: threads * (T * d + PAGE_FLOATS) floats. */
static void backward_full_one(const float *z, const float *g, float *grad, int64_t n,
                              int64_t d, int threads, float *scratch) {
    if (threads > 1) {
#pragma omp parallel for schedule(dynamic, 2) num_threads(threads)
        for (int64_t i0 = 0; i0 < n; i0 += T)
            backward_full_rows(z, g, grad, n, d, i0, scratch + THREAD_ID * (T * d + PAGE_FLOATS));
    } else {
        for (int64_t i0 = 0; i0 < n; i0 += T) backward_full_rows(z, g, grad, n, d, i0, scratch);
    }
}

/* The weights w_ij, i < j, of the backward over pairs: g_ij + g_ji of the gradient g [n, n]
 * of the distances (upper == 0), or scale * g_ij of weights kept in the upper triangle of g
 * (upper == 1: the layer loss). */
typedef struct {
    const float *g;
    int upper;
    float scale;
} PairWeights;

static inline float weight_of(PairWeights w, int64_t n, int64_t i, int64_t j) {
    return w.upper ? w.scale * w.g[i * n + j] : w.g[i * n + j] + w.g[j * n + i];
}

/* The pairs (i, j), i in i0..i0+T-1, j > i: adds w_ij sign(z_i - z_j) to rows i of G and
 * subtracts it from rows j. Rows i accumulate in acc (placed as in backward_full_rows) and
 * are added to G at the end. */
static void backward_pairs_rows(const float *z, PairWeights weights, float *G, int64_t n,
                                int64_t d, int64_t i0,
                                float *acc /* [T * d + PAGE_FLOATS] scratch */) {
    const int64_t rows = (n - i0) < T ? (n - i0) : T;
    const float *a0 = z + clamp_row(i0, n) * d, *a1 = z + clamp_row(i0 + 1, n) * d;
    const float *a2 = z + clamp_row(i0 + 2, n) * d, *a3 = z + clamp_row(i0 + 3, n) * d;
    acc += (((uintptr_t)a0 - (uintptr_t)acc) & (PAGE_FLOATS * sizeof(float) - 1)) / sizeof(float);
    float *g0 = acc, *g1 = acc + d, *g2 = acc + 2 * d, *g3 = acc + 3 * d;
    memset(acc, 0, (size_t)(T * d) * sizeof(float));
    for (int64_t j = i0 + 1; j < n; j++) {
        float w[T];
        for (int64_t r = 0; r < T; r++) {
            const int64_t i = i0 + r; /* i >= n (a clamped row) implies i > j: weight 0 */
            w[r] = (i < j) ? weight_of(weights, n, i, j) : 0.0f;
        }
        const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
        const float *b = z + j * d;
        float *gj = G + j * d;
        /* hot loop: backward */
#pragma omp simd
        for (int64_t k = 0; k < d; k++) {
            const float y = b[k];
            const float s0 = pair_weight(a0[k], y, w0), s1 = pair_weight(a1[k], y, w1);
            const float s2 = pair_weight(a2[k], y, w2), s3 = pair_weight(a3[k], y, w3);
            g0[k] += s0;
            g1[k] += s1;
            g2[k] += s2;
            g3[k] += s3;
            gj[k] -= (s0 + s1) + (s2 + s3);
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        float *out = G + (i0 + r) * d;
        const float *row = acc + r * d;
        for (int64_t k = 0; k < d; k++) out[k] += row[k];
    }
}

/* One [n, d] matrix. scratch: threads * (T * d + PAGE_FLOATS) + (threads - 1) * n * d
 * floats: an accumulator per thread, and a gradient per thread but the first (grad). */
static void backward_one(const float *z, PairWeights weights, float *grad, int64_t n,
                         int64_t d, int threads, float *scratch) {
    memset(grad, 0, (size_t)(n * d) * sizeof(float));
    if (threads <= 1) {
        for (int64_t i0 = 0; i0 < n; i0 += T)
            backward_pairs_rows(z, weights, grad, n, d, i0, scratch);
        return;
    }
    float *partial = scratch + threads * (T * d + PAGE_FLOATS); /* [threads - 1, n, d] */
    memset(partial, 0, (size_t)((threads - 1) * n * d) * sizeof(float));
    /* static: each thread's gradient, hence the rounding, must not depend on timing */
#pragma omp parallel num_threads(threads)
    {
        const int t = THREAD_ID;
        float *G = t == 0 ? grad : partial + (t - 1) * n * d;
        float *acc = scratch + t * (T * d + PAGE_FLOATS);
#pragma omp for schedule(static, 1)
        for (int64_t i0 = 0; i0 < n; i0 += T) backward_pairs_rows(z, weights, G, n, d, i0, acc);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++)
            for (int u = 1; u < threads; u++) {
                const float *row = partial + ((u - 1) * n + i) * d;
                for (int64_t k = 0; k < d; k++) grad[i * d + k] += row[k];
            }
    }
}

/* Pass 1 of the layer loss on rows i0..i0+T-1 of one member: for each pair i < j the
 * masked differences e_ij = m_ij (t_ij - D_ij / divisor) and e_ji (the same D_ij); stores
 * e_ij + e_ji in the upper triangle of w [n, n] and returns the sum of e_ij^2 + e_ji^2 and of
 * the diagonal's (m_ii t_ii)^2 (D_ii = 0). mask: [n, n] of 0/1, or NULL for all pairs.
 * inverse = 1 / divisor. */
static double loss_rows(const float *z, const float *target, const uint8_t *mask,
                        float inverse, float *w, int64_t n, int64_t d, int64_t i0) {
    double sum = 0.0;
    for (int64_t i = i0; i < i0 + T && i < n; i++) {
        const float e = mask ? mask[i * n + i] * target[i * n + i] : target[i * n + i];
        sum += (double)e * e;
    }
    for (int64_t j0 = i0; j0 < n; j0 += T) {
        float s[T][T], squares[T][T];
        tile_distances(z, n, d, i0, j0, s);
        for (int64_t r = 0; r < T; r++)
            for (int64_t c = 0; c < T; c++) {
                const int64_t i = i0 + r, j = j0 + c;
                squares[r][c] = 0.0f;
                if (j <= i || j >= n) continue; /* not a pair i < j (i < j < n implies i < n) */
                const float dist = s[r][c] * inverse;
                float e_ij = target[i * n + j] - dist, e_ji = target[j * n + i] - dist;
                if (mask) {
                    e_ij *= mask[i * n + j];
                    e_ji *= mask[j * n + i];
                }
                w[i * n + j] = e_ij + e_ji;
                squares[r][c] = e_ij * e_ij + e_ji * e_ji;
            }
        /* the tile's squares summed in float, the tiles in double */
        for (int64_t r = 0; r < T; r++)
            sum += (double)((squares[r][0] + squares[r][1]) + (squares[r][2] + squares[r][3]));
    }
    return sum;
}

/* The layer loss of one member; *loss and grad [n, d]. scratch: see lpdm_l1_layer_loss_scratch. */
static void layer_loss_one(const float *z, const float *target, const uint8_t *mask,
                           float divisor, float *loss, float *grad, int64_t n, int64_t d,
                           int threads, float *scratch) {
    const int64_t tiles = (n + T - 1) / T;
    double *sums = (double *)scratch; /* [tiles]: per tile of rows, summed in order below */
    float *w = scratch + 2 * tiles;   /* [n, n]: e_ij + e_ji in the upper triangle */
    float *rest = w + n * n;          /* the backward's scratch */
    const float inverse = 1.0f / divisor;
    if (threads > 1) {
#pragma omp parallel for schedule(dynamic, 2) num_threads(threads)
        for (int64_t t = 0; t < tiles; t++)
            sums[t] = loss_rows(z, target, mask, inverse, w, n, d, t * T);
    } else {
        for (int64_t t = 0; t < tiles; t++)
            sums[t] = loss_rows(z, target, mask, inverse, w, n, d, t * T);
    }
    double sum = 0.0;
    for (int64_t t = 0; t < tiles; t++) sum += sums[t];
    *loss = (float)sqrt(sum);
    if (*loss == 0.0f) { /* as autograd through the norm at 0: no gradient */
        memset(grad, 0, (size_t)(n * d) * sizeof(float));
        return;
    }
    /* dL/dD_ij = -e_ij / (L divisor); the pair's weight adds those of (i, j) and (j, i) */
    const PairWeights weights = {w, 1, -1.0f / (*loss * divisor)};
    backward_one(z, weights, grad, n, d, threads, rest);
}

void lpdm_l1_forward(const float *z, float *out, int64_t m, int64_t n, int64_t d, int threads,
                     float *scratch) {
    for (int64_t k = 0; k < m; k++)
        forward_one(z + k * n * d, out + k * n * n, n, d, threads, scratch);
}

void lpdm_l1_backward(const float *z, const float *g, float *grad, int64_t m, int64_t n,
                      int64_t d, int threads, float *scratch) {
    for (int64_t k = 0; k < m; k++) {
        const PairWeights weights = {g + k * n * n, 0, 1.0f};
        backward_one(z + k * n * d, weights, grad + k * n * d, n, d, threads, scratch);
    }
}

void lpdm_l1_backward_full(const float *z, const float *g, float *grad, int64_t m, int64_t n,
                           int64_t d, int threads, float *scratch) {
    for (int64_t k = 0; k < m; k++)
        backward_full_one(z + k * n * d, g + k * n * n, grad + k * n * d, n, d, threads,
                          scratch);
}

void lpdm_l1_layer_loss(const float *z, const float *target, const uint8_t *mask,
                        float divisor, float *loss, float *grad, int64_t m, int64_t n,
                        int64_t d, int threads, float *scratch) {
    for (int64_t k = 0; k < m; k++)
        layer_loss_one(z + k * n * d, target + k * n * n, mask ? mask + k * n * n : NULL,
                       divisor, loss + k, grad + k * n * d, n, d, threads, scratch);
}

/* Scratch floats the passes need, for the Python side to allocate (reused across matrices). */
int64_t lpdm_l1_forward_scratch(int64_t n, int64_t d) { return d < NARROW ? n * d : 0; }
int64_t lpdm_l1_backward_scratch(int64_t n, int64_t d, int threads) { /* either backward */
    return (int64_t)threads * (T * d + PAGE_FLOATS) + (int64_t)(threads - 1) * n * d;
}

int64_t lpdm_l1_layer_loss_scratch(int64_t n, int64_t d, int threads) {
    return 2 * ((n + T - 1) / T) + n * n + lpdm_l1_backward_scratch(n, d, threads);
}

/* 1 when built with OpenMP (threads > 1 then runs in parallel). */
int lpdm_l1_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
