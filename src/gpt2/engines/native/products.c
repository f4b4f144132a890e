/* The NumPy engine's matrix products (and the PyTorch engine's on a CPU), in C: float32, bf16
   and int8 weights.

   Decoding one token reads every weight once, so its speed is the memory bus's: a weight
   read in one byte (int8) or two (bf16) instead of four arrives two to four times sooner,
   if the arithmetic keeps up. NumPy has no int8 or bf16 matrix product, so these are here; the
   float32 one streams its weights in tiles and, for a prompt's rows, keeps 8 x 3 sums in
   registers. gpt2/engines/native/build.py compiles this file (with attention.c and pool.c) for
   the CPU it runs on (-march=native) the first time it is needed; products.py calls it through
   ctypes.

   All compute, for N rows x [N, K] (any strides) and a weight W [M, K]:

       out[n, m] (=, or +=) sum_k norm(x)[n, k] W[m, k] + bias[m]      norm: a layer norm, or none

   The weight is packed once, when the engine loads: rows in tiles of R = 8, each tile's rows
   interleaved 64 bytes at a time ([M / R, Kp / 64, R, 64 bytes]), K padded with zero weights
   to Kp, a multiple of 64. A tile is then one forward stream of memory (the prefetcher's
   favourite), and each value of x that is loaded serves 8 rows.

   int8 (W8A8, as llama.cpp's Q8_0 products): each row of x is itself quantized, one scale per
   block of 16 values (x ~ xq * s_b, |xq| <= 127), so the inner products are integer ones:
   AVX512-VNNI's vpdpbusd multiplies 64 byte pairs at once, into 16 int32 sums of 4 products.
   It takes unsigned bytes times signed ones, so the weights are stored offset, u = q + 128,
   and the offset's share, 128 * sum_b s_b * sum(xq in block b), is the same for every output
   row: it is taken off once, at the end (C[n] below). With the weight's row scale wscale[m]:

       out[n, m] = wscale[m] * (sum_b s_b * sum_{k in b} u[m, k] xq[n, k]  -  C[n]) + bias[m]

   bf16: a weight is the top 16 bits of its float32. With AVX512-BF16, x is rounded to bf16
   too and vdpbf16ps multiplies 32 pairs into float32 sums; without it x stays float32 and
   each weight is widened as it is read.

   Without AVX512 the same sums are plain loops that the compiler vectorises as it can. */

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "pool.h" /* gpt2_run_units: the threads that share a product's rows */

#define R 8          /* output rows a tile */
#define CHUNK 64     /* bytes of one row in a tile's stride */
#define BLOCK 16     /* values of x that share one int8 scale */
#define AHEAD 4096   /* bytes prefetched ahead of the stream */

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#define INT8_SIMD 1
#else
#define INT8_SIMD 0
#endif
#if defined(__AVX512BF16__) && defined(__AVX512DQ__)
#define BF16_SIMD 1
#else
#define BF16_SIMD 0
#endif

/* What this build vectorises by hand: bit 0 int8 (AVX512-VNNI), bit 1 bf16 (AVX512-BF16),
   bit 2 float32 (AVX512). */
int gpt2_native_features(void) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    return INT8_SIMD | (BF16_SIMD << 1) | 4;
#else
    return INT8_SIMD | (BF16_SIMD << 1);
#endif
}

/* The epilogue: the bias, then = or += (a residual connection). */
static inline void store(float *out, float v, const float *bias, int64_t m, int accumulate) {
    if (bias) v += bias[m];
    *out = accumulate ? *out + v : v;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
/* Eight vectors of partial sums -> their eight totals. */
static inline void reduce8(const __m512 a[R], float *totals) {
    for (int r = 0; r < R; r += 4) {
        __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a[r], a[r + 1]), _mm512_unpackhi_ps(a[r], a[r + 1]));
        __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a[r + 2], a[r + 3]), _mm512_unpackhi_ps(a[r + 2], a[r + 3]));
        __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23));
        __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23));
        __m512 s = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi)); /* each 128-bit lane: r..r+3 */
        __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
        _mm_storeu_ps(totals + r, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
    }
}
#endif

/* Row n of x, layer-normalised (when gain is not NULL) into row [K] of `into`: the products of
   ln_1(x) and ln_2(x) read x once, here, instead of NumPy writing the normalised copy first. */
static const float *normalised(const float *x, int64_t sk, int64_t K, const float *gain, const float *shift,
                               float eps, float *into, int64_t *stride) {
    if (!gain) {
        *stride = sk;
        return x;
    }
    float mean = 0.0f, var = 0.0f;
    for (int64_t k = 0; k < K; k++) mean += x[k * sk];
    mean /= (float)K;
    for (int64_t k = 0; k < K; k++) {
        float d = x[k * sk] - mean;
        var += d * d;
    }
    float inv = 1.0f / sqrtf(var / (float)K + eps);
    for (int64_t k = 0; k < K; k++) into[k] = (x[k * sk] - mean) * inv * gain[k] + shift[k];
    *stride = 1;
    return into;
}

/* --- int8 --------------------------------------------------------------------------------- */

/* One row x [K] (stride sk) -> xq [Kp] (zeros past K), the lane scales ls [Kp / 4] (the scale of
   the block each group of 4 values is in: vpdpbusd's sums), and the offset's share C. With lo
   (not NULL), the rounding error too: x ~ (xq + lo / 254) * s_b, about 15 bits a value. */
static float quantize_row(const float *x, int64_t sk, int64_t K, int64_t Kp, int8_t *xq, int8_t *lo, float *ls) {
    float offset = 0.0f;
    for (int64_t b0 = 0; b0 < Kp; b0 += BLOCK) {
        float amax = 0.0f;
        int finite = 1;
        for (int64_t k = b0; k < b0 + BLOCK && k < K; k++) {
            float a = fabsf(x[k * sk]);
            finite &= a <= FLT_MAX; /* false for inf and NaN */
            amax = a > amax ? a : amax;
        }
        if (!finite) { /* as a float product would: NaN out (converting NaN to an integer is undefined) */
            for (int64_t k = b0; k < b0 + BLOCK; k++) {
                xq[k] = 0;
                if (lo) lo[k] = 0;
            }
            for (int64_t j = b0 / 4; j < (b0 + BLOCK) / 4; j++) ls[j] = NAN;
            offset = NAN;
            continue;
        }
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f, s = amax / 127.0f;
        int32_t sum = 0, sum_lo = 0;
        for (int64_t k = b0; k < b0 + BLOCK; k++) {
            float v = k < K ? x[k * sk] * inv : 0.0f;
            int32_t q = (int32_t)nearbyintf(v);
            q = q > 127 ? 127 : q < -127 ? -127 : q;
            xq[k] = (int8_t)q;
            sum += q;
            if (lo) {
                int32_t r = (int32_t)nearbyintf((v - (float)q) * 254.0f);  /* |v - q| <= 1/2 */
                r = r > 127 ? 127 : r < -127 ? -127 : r;
                lo[k] = (int8_t)r;
                sum_lo += r;
            }
        }
        for (int64_t j = b0 / 4; j < (b0 + BLOCK) / 4; j++) ls[j] = s;
        offset += 128.0f * s * ((float)sum + (float)sum_lo / 254.0f);
    }
    return offset;
}

/* The R sums of one tile (R rows of Kp bytes, interleaved) against one quantized row of x (and
   its rounding error, lo, if not NULL). */
static inline void int8_tile(const uint8_t *w, int64_t Kp, const int8_t *xq, const int8_t *lo, const float *ls,
                             float *totals) {
#if INT8_SIMD
    __m512 a[R];
    for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    const __m512 third = _mm512_set1_ps(1.0f / 254.0f);
    for (int64_t k = 0; k < Kp; k += CHUNK) {
        const uint8_t *wk = w + R * k;
        __m512i xv = _mm512_loadu_si512((const void *)(xq + k));
        __m512 sv = _mm512_loadu_ps(ls + k / 4);
        if (lo) {
            __m512i lv = _mm512_loadu_si512((const void *)(lo + k));
            __m512 sl = _mm512_mul_ps(sv, third);
            for (int r = 0; r < R; r++) {
                _mm_prefetch((const char *)(wk + CHUNK * r + AHEAD), _MM_HINT_T0);
                __m512i wv = _mm512_load_si512((const void *)(wk + CHUNK * r));
                a[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wv, xv)), sv, a[r]);
                a[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, wv, lv)), sl, a[r]);
            }
        } else {
            for (int r = 0; r < R; r++) {
                _mm_prefetch((const char *)(wk + CHUNK * r + AHEAD), _MM_HINT_T0);
                __m512i d = _mm512_dpbusd_epi32(zero, _mm512_load_si512((const void *)(wk + CHUNK * r)), xv);
                a[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sv, a[r]);
            }
        }
    }
    reduce8(a, totals);
#else
    for (int r = 0; r < R; r++) totals[r] = 0.0f;
    for (int64_t k = 0; k < Kp; k += CHUNK) {
        const uint8_t *wk = w + R * k;
        for (int r = 0; r < R; r++)
            for (int64_t b = 0; b < CHUNK; b += BLOCK) {
                int32_t sum = 0, sum_lo = 0;
                for (int j = 0; j < BLOCK; j++) sum += (int16_t)wk[CHUNK * r + b + j] * (int16_t)xq[k + b + j];
                if (lo)
                    for (int j = 0; j < BLOCK; j++) sum_lo += (int16_t)wk[CHUNK * r + b + j] * (int16_t)lo[k + b + j];
                totals[r] += ls[(k + b) / 4] * ((float)sum + (float)sum_lo / 254.0f);
            }
    }
#endif
}

/* How many units of tiles to cut M rows into for `threads` threads: several a thread, so that
   one that starts late still finds work, and never fewer than 4 tiles a unit. */
static int64_t units_of(int64_t *tiles_a_unit, int64_t M, int threads) {
    int64_t tiles = (M + R - 1) / R, per = tiles / (8 * (int64_t)threads);
    *tiles_a_unit = per < 4 ? 4 : per;
    return (tiles + *tiles_a_unit - 1) / *tiles_a_unit;
}

typedef struct {
    const uint8_t *w;
    int64_t Kp;
    const int8_t *xq, *lo;
    const float *ls, *offset, *wscale, *bias;
    int64_t M, N;
    float *out;
    int64_t so_n, so_m;
    int accumulate;
    int64_t tiles_a_unit;
} Int8Job;

static void int8_unit(void *arg, int64_t unit) {
    const Int8Job *j = (const Int8Job *)arg;
    const int64_t Kp = j->Kp, tiles = (j->M + R - 1) / R;
    for (int64_t t = unit * j->tiles_a_unit; t < (unit + 1) * j->tiles_a_unit && t < tiles; t++) {
        float totals[R];
        for (int64_t n = 0; n < j->N; n++) {
            int8_tile(j->w + t * R * Kp, Kp, j->xq + n * Kp, j->lo ? j->lo + n * Kp : NULL, j->ls + n * (Kp / 4),
                      totals);
            for (int64_t r = 0, m = t * R; r < R && m < j->M; r++, m++)
                store(j->out + n * j->so_n + m * j->so_m, j->wscale[m] * (totals[r] - j->offset[n]), j->bias, m,
                      j->accumulate);
        }
    }
}

/* out[n * so_n + m * so_m] for n < N, m < M. w: the packed weight ([ceil(M / R), Kp / 64, R, 64]
   bytes, 64-byte aligned); wscale [M]; bias [M] or NULL; ln_gain, ln_bias [K] or NULL: x
   layer-normalised first (eps); precise: x quantized in two parts (hi and its rounding error:
   twice the arithmetic, about 15-bit activations). scratch: N * (3 * Kp + 4) + 4 * K bytes. */
void gpt2_int8_linear(const float *x, int64_t N, int64_t K, int64_t sx_n, int64_t sx_k, const uint8_t *w,
                      const float *wscale, const float *bias, int64_t M, int64_t Kp, float *out, int64_t so_n,
                      int64_t so_m, const float *ln_gain, const float *ln_bias, float eps, int accumulate,
                      int precise, int threads, void *scratch) {
    int8_t *xq = (int8_t *)scratch;          /* [N, Kp] */
    int8_t *lo = xq + N * Kp;                /* [N, Kp]: the rounding errors, if precise */
    float *ls = (float *)(lo + N * Kp);      /* [N, Kp / 4] */
    float *offset = ls + N * (Kp / 4);       /* [N] */
    float *row = offset + N;                 /* [K]: a normalised row */
    for (int64_t n = 0; n < N; n++) {
        int64_t sk;
        const float *xn = normalised(x + n * sx_n, sx_k, K, ln_gain, ln_bias, eps, row, &sk);
        offset[n] = quantize_row(xn, sk, K, Kp, xq + n * Kp, precise ? lo + n * Kp : NULL, ls + n * (Kp / 4));
    }
    Int8Job job = {w, Kp, xq, precise ? lo : NULL, ls, offset, wscale, bias, M, N, out, so_n, so_m, accumulate, 0};
    gpt2_run_units(int8_unit, &job, units_of(&job.tiles_a_unit, M, threads), threads);
}

/* --- bf16 and float32: one loop over tiles, three rows of x at a time -------------------------- */

/* The sums of one tile against 1, 2 or 3 rows of x (each Kp values, one after another). */
typedef void (*tile_fn)(const void *w, int64_t Kp, const void *x, float *totals);

typedef struct {
    tile_fn tile[3];         /* for 1, 2 and 3 rows of x */
    const char *w;           /* the packed tiles */
    int64_t tile_bytes;      /* one tile of w: R * Kp weights */
    const char *x;           /* x in the form the tiles read, [N, Kp] */
    int64_t row_bytes;       /* one row of that */
    int64_t Kp;
    const float *bias;
    int64_t M, N;
    float *out;
    int64_t so_n, so_m;
    int accumulate;
    int64_t tiles_a_unit;
} DenseJob;

static void dense_unit(void *arg, int64_t unit) {
    const DenseJob *j = (const DenseJob *)arg;
    const int64_t tiles = (j->M + R - 1) / R;
    for (int64_t t = unit * j->tiles_a_unit; t < (unit + 1) * j->tiles_a_unit && t < tiles; t++) {
        for (int64_t n = 0; n < j->N;) {
            float totals[3 * R];
            const int64_t left = j->N - n, rows = left >= 3 ? 3 : left;
            j->tile[rows - 1](j->w + t * j->tile_bytes, j->Kp, j->x + n * j->row_bytes, totals);
            for (int64_t i = 0; i < rows; i++)
                for (int64_t r = 0, m = t * R; r < R && m < j->M; r++, m++)
                    store(j->out + (n + i) * j->so_n + m * j->so_m, totals[R * i + r], j->bias, m, j->accumulate);
            n += rows;
        }
    }
}

/* --- bf16 --------------------------------------------------------------------------------- */

#if BF16_SIMD
typedef uint16_t xbf_t; /* x rounded to bf16 */
static inline uint16_t to_bf16(float f) { /* round to nearest, ties to even (finite values) */
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}
#else
typedef float xbf_t; /* x kept float32 */
static inline float widen(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
#endif

/* TB rows of x (each Kp long, one after another) against one tile: 8 x TB sums in registers, so
   each weight loaded serves TB rows (a prompt's rows share the weights, as in the float32 product). */
#define BF16_TILE(TB)                                                                                 \
    static void bf16_tile_##TB(const void *weights, int64_t Kp, const void *rows, float *totals) {    \
        const uint16_t *w = (const uint16_t *)weights;                                                \
        const xbf_t *xb = (const xbf_t *)rows;                                                        \
        BF16_SUMS(TB)                                                                                 \
    }
#if BF16_SIMD
#define BF16_SUMS(TB)                                                                                 \
    __m512 a[TB][R];                                                                                  \
    for (int t = 0; t < TB; t++)                                                                      \
        for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();                                    \
    for (int64_t k = 0; k < Kp; k += CHUNK / 2) {                                                     \
        const uint16_t *wk = w + R * k;                                                               \
        __m512bh xv[TB];                                                                              \
        for (int t = 0; t < TB; t++) xv[t] = (__m512bh)_mm512_loadu_si512((const void *)(xb + t * Kp + k)); \
        for (int r = 0; r < R; r++) {                                                                 \
            _mm_prefetch((const char *)(wk + CHUNK / 2 * r) + AHEAD, _MM_HINT_T0);                   \
            __m512bh wv = (__m512bh)_mm512_load_si512((const void *)(wk + CHUNK / 2 * r));            \
            for (int t = 0; t < TB; t++) a[t][r] = _mm512_dpbf16_ps(a[t][r], wv, xv[t]);              \
        }                                                                                             \
    }                                                                                                 \
    for (int t = 0; t < TB; t++) reduce8(a[t], totals + R * t);
#else
#define BF16_SUMS(TB)                                                                                 \
    for (int t = 0; t < TB; t++)                                                                      \
        for (int r = 0; r < R; r++) {                                                                 \
            float a[CHUNK / 2] = {0};                                                                 \
            for (int64_t k = 0; k < Kp; k += CHUNK / 2) {                                             \
                const uint16_t *wk = w + R * k + CHUNK / 2 * r;                                       \
                for (int j = 0; j < CHUNK / 2; j++) a[j] += widen(wk[j]) * xb[t * Kp + k + j];       \
            }                                                                                         \
            float total = 0.0f;                                                                       \
            for (int j = 0; j < CHUNK / 2; j++) total += a[j];                                        \
            totals[R * t + r] = total;                                                                \
        }
#endif
BF16_TILE(1)
BF16_TILE(2)
BF16_TILE(3)

/* As gpt2_int8_linear, for a packed bf16 weight ([ceil(M / R), Kp / 32, R, 32] uint16, 64-byte
   aligned). scratch: N * Kp * 4 + K * 4 bytes. */
void gpt2_bf16_linear(const float *x, int64_t N, int64_t K, int64_t sx_n, int64_t sx_k, const uint16_t *w,
                      const float *bias, int64_t M, int64_t Kp, float *out, int64_t so_n, int64_t so_m,
                      const float *ln_gain, const float *ln_bias, float eps, int accumulate, int threads,
                      void *scratch) {
    xbf_t *xb = (xbf_t *)scratch;            /* [N, Kp] */
    float *row = (float *)(xb + N * Kp);     /* [K]: a normalised row */
    for (int64_t n = 0; n < N; n++) {
        int64_t sk;
        const float *xn = normalised(x + n * sx_n, sx_k, K, ln_gain, ln_bias, eps, row, &sk);
        for (int64_t k = 0; k < Kp; k++) {
            float v = k < K ? xn[k * sk] : 0.0f;
#if BF16_SIMD
            xb[n * Kp + k] = to_bf16(v);
#else
            xb[n * Kp + k] = v;
#endif
        }
    }
    DenseJob job = {{bf16_tile_1, bf16_tile_2, bf16_tile_3}, (const char *)w, R * Kp * 2, (const char *)xb,
                    Kp * (int64_t)sizeof(xbf_t), Kp, bias, M, N, out, so_n, so_m, accumulate, 0};
    gpt2_run_units(dense_unit, &job, units_of(&job.tiles_a_unit, M, threads), threads);
}

/* --- float32 ------------------------------------------------------------------------------ */

/* TB rows of x against one tile: 8 x TB sums kept in registers (24 of AVX512's 32 at TB = 3), so
   each weight loaded serves TB rows of x and each x value 8 rows of W. A prompt's products are
   then bound by the multiply-adds, not by loads: twice OpenBLAS's sgemm on this project's CPU
   (with its AVX2 kernels). */
#define F32_TILE(TB)                                                                                  \
    static void f32_tile_##TB(const void *weights, int64_t Kp, const void *rows, float *totals) {     \
        const float *w = (const float *)weights, *x = (const float *)rows;                            \
        F32_SUMS(TB)                                                                                  \
    }
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define F32_SUMS(TB)                                                                                  \
    __m512 a[TB][R];                                                                                  \
    for (int t = 0; t < TB; t++)                                                                      \
        for (int r = 0; r < R; r++) a[t][r] = _mm512_setzero_ps();                                    \
    for (int64_t k = 0; k < Kp; k += 16) {                                                            \
        const float *wk = w + R * k;                                                                  \
        __m512 xv[TB];                                                                                \
        for (int t = 0; t < TB; t++) xv[t] = _mm512_loadu_ps(x + t * Kp + k);                         \
        for (int r = 0; r < R; r++) {                                                                 \
            _mm_prefetch((const char *)(wk + 16 * r) + AHEAD, _MM_HINT_T0);                          \
            __m512 wv = _mm512_load_ps(wk + 16 * r);                                                  \
            for (int t = 0; t < TB; t++) a[t][r] = _mm512_fmadd_ps(wv, xv[t], a[t][r]);               \
        }                                                                                             \
    }                                                                                                 \
    for (int t = 0; t < TB; t++) reduce8(a[t], totals + R * t);
#else
#define F32_SUMS(TB)                                                                                  \
    for (int t = 0; t < TB; t++)                                                                      \
        for (int r = 0; r < R; r++) {                                                                 \
            float lanes[16] = {0};                                                                    \
            for (int64_t k = 0; k < Kp; k += 16)                                                      \
                for (int j = 0; j < 16; j++) lanes[j] += w[R * k + 16 * r + j] * x[t * Kp + k + j];   \
            float total = 0.0f;                                                                       \
            for (int j = 0; j < 16; j++) total += lanes[j];                                           \
            totals[R * t + r] = total;                                                                \
        }
#endif
F32_TILE(1)
F32_TILE(2)
F32_TILE(3)

/* As gpt2_int8_linear, for a packed float32 weight ([ceil(M / R), Kp / 16, R, 16] floats, 64-byte
   aligned). scratch: N * Kp * 4 + K * 4 bytes. */
void gpt2_f32_linear(const float *x, int64_t N, int64_t K, int64_t sx_n, int64_t sx_k, const float *w,
                     const float *bias, int64_t M, int64_t Kp, float *out, int64_t so_n, int64_t so_m,
                     const float *ln_gain, const float *ln_bias, float eps, int accumulate, int threads,
                     void *scratch) {
    float *xs = (float *)scratch;           /* [N, Kp]: x (normalised), contiguous, zero past K */
    float *row = xs + N * Kp;               /* [K]: a normalised row */
    for (int64_t n = 0; n < N; n++) {
        int64_t sk;
        const float *xn = normalised(x + n * sx_n, sx_k, K, ln_gain, ln_bias, eps, row, &sk);
        for (int64_t k = 0; k < Kp; k++) xs[n * Kp + k] = k < K ? xn[k * sk] : 0.0f;
    }
    DenseJob job = {{f32_tile_1, f32_tile_2, f32_tile_3}, (const char *)w, R * Kp * 4, (const char *)xs, Kp * 4,
                    Kp, bias, M, N, out, so_n, so_m, accumulate, 0};
    gpt2_run_units(dense_unit, &job, units_of(&job.tiles_a_unit, M, threads), threads);
}
