/* The NumPy engine's int8 and bf16 matrix products, in C.

   Decoding one token reads every weight once, so its speed is the memory bus's: a weight
   read in one byte (int8) or two (bf16) instead of four arrives two to four times sooner,
   if the arithmetic keeps up. NumPy has no int8 or bf16 matrix product, so these are here.
   gpt2/engines/native/build.py compiles this file for the CPU it runs on (-march=native)
   the first time it is needed; gpt2/engines/native/products.py calls it through ctypes.

   Both compute, for N rows x [N, K] (any strides) and a weight W [M, K]:

       out[n, m] (=, or +=) sum_k norm(x)[n, k] W[m, k] + bias[m]      norm: a layer norm, or none

   The weight is packed once, when the engine loads: rows in tiles of R = 8, each tile's rows
   interleaved 64 bytes at a time ([M / R, Kp / 64, R, 64 bytes]), K padded with zero weights
   to Kp, a multiple of 64. A tile is then one forward stream of memory (the prefetcher's
   favourite), and each value of x that is loaded serves 8 rows.

   int8 (W8A8, as llama.cpp's Q8_0 products): each row of x is itself quantized, one scale per
   block of 32 values (x ~ xq * s_b, |xq| <= 127), so the inner products are integer ones:
   AVX512-VNNI's vpdpbusd multiplies 64 byte pairs at once, into 16 int32 sums of 4 products.
   It takes unsigned bytes times signed ones, so the weights are stored offset, u = q + 128,
   and the offset's share, 128 * sum_b s_b * sum(xq in block b), is the same for every output
   row: it is taken off once, at the end (C[n] below). With the weight's row scale wscale[m]:

       out[n, m] = wscale[m] * (sum_b s_b * sum_{k in b} u[m, k] xq[n, k]  -  C[n]) + bias[m]

   bf16: a weight is the top 16 bits of its float32. With AVX512-BF16, x is rounded to bf16
   too and vdpbf16ps multiplies 32 pairs into float32 sums; without it x stays float32 and
   each weight is widened as it is read.

   Without AVX512 the same sums are plain loops that the compiler vectorises as it can. */

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define R 8          /* output rows a tile */
#define CHUNK 64     /* bytes of one row in a tile's stride */
#define BLOCK 32     /* values of x that share one int8 scale */
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

/* What this build vectorises by hand: bit 0 int8 (AVX512-VNNI), bit 1 bf16 (AVX512-BF16). */
int gpt2_native_features(void) { return INT8_SIMD | (BF16_SIMD << 1); }

/* The epilogue: the bias, then = or += (a residual connection). */
static inline void store(float *out, float v, const float *bias, int64_t m, int accumulate) {
    if (bias) v += bias[m];
    *out = accumulate ? *out + v : v;
}

#if INT8_SIMD || BF16_SIMD
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
        for (int64_t k = b0; k < b0 + BLOCK && k < K; k++) {
            float a = fabsf(x[k * sk]);
            amax = a > amax ? a : amax;
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
    int64_t tiles = (M + R - 1) / R;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t t = 0; t < tiles; t++) {
        float totals[R];
        for (int64_t n = 0; n < N; n++) {
            int8_tile(w + t * R * Kp, Kp, xq + n * Kp, precise ? lo + n * Kp : NULL, ls + n * (Kp / 4), totals);
            for (int64_t r = 0, m = t * R; r < R && m < M; r++, m++)
                store(out + n * so_n + m * so_m, wscale[m] * (totals[r] - offset[n]), bias, m, accumulate);
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

static inline void bf16_tile(const uint16_t *w, int64_t Kp, const xbf_t *xb, float *totals) {
#if BF16_SIMD
    __m512 a[R];
    for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < Kp; k += CHUNK / 2) {
        const uint16_t *wk = w + R * k;
        __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(xb + k));
        for (int r = 0; r < R; r++) {
            _mm_prefetch((const char *)(wk + CHUNK / 2 * r) + AHEAD, _MM_HINT_T0);
            a[r] = _mm512_dpbf16_ps(a[r], (__m512bh)_mm512_load_si512((const void *)(wk + CHUNK / 2 * r)), xv);
        }
    }
    reduce8(a, totals);
#else
    for (int r = 0; r < R; r++) {
        float a[CHUNK / 2] = {0};
        for (int64_t k = 0; k < Kp; k += CHUNK / 2) {
            const uint16_t *wk = w + R * k + CHUNK / 2 * r;
            for (int j = 0; j < CHUNK / 2; j++) a[j] += widen(wk[j]) * xb[k + j];
        }
        float total = 0.0f;
        for (int j = 0; j < CHUNK / 2; j++) total += a[j];
        totals[r] = total;
    }
#endif
}

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
    int64_t tiles = (M + R - 1) / R;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t t = 0; t < tiles; t++) {
        float totals[R];
        for (int64_t n = 0; n < N; n++) {
            bf16_tile(w + t * R * Kp, Kp, xb + n * Kp, totals);
            for (int64_t r = 0, m = t * R; r < R && m < M; r++, m++)
                store(out + n * so_n + m * so_m, totals[r], bias, m, accumulate);
        }
    }
}
