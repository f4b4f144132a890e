/* Causal attention over a layer's KV cache, for the NumPy engine (see gpt2_attention below).
   Compiled with products.c and pool.c into one library by build.py. */

#include <math.h>
#include <stdint.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "pool.h"

/* sum_j a[j] b[j]: 16 lanes at a time, then the lanes' sum */
static inline float dot_product(const float *a, const float *b, int64_t n) {
    int64_t j = 0;
    float total = 0.0f;
#if defined(__AVX512F__)
    __m512 acc = _mm512_setzero_ps();
    for (; j + 16 <= n; j += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), acc);
    total = _mm512_reduce_add_ps(acc);
#endif
    for (; j < n; j++) total += a[j] * b[j];
    return total;
}

typedef struct {
    const float *qkv;
    int64_t T, sq_n, sq_m;
    const float *keys, *values;
    int64_t s_b, s_h;
    const int64_t *past;
    int64_t H, hd, n_ctx;
    float *out, *scratch;
} AttentionJob;

/* One (row, head) pair: its T queries over the keys each may see. */
static void attention_unit(void *arg, int64_t unit) {
    const AttentionJob *j = (const AttentionJob *)arg;
    const int64_t b = unit / j->H, h = unit % j->H, hd = j->hd, d = j->H * hd, T = j->T;
    const float scale = 1.0f / sqrtf((float)hd);
    float *scores = j->scratch + unit * (j->n_ctx + hd), *q = scores + j->n_ctx; /* no stack array: hd is any size */
    const float *kh = j->keys + b * j->s_b + h * j->s_h, *vh = j->values + b * j->s_b + h * j->s_h;
    for (int64_t t = 0; t < T; t++) {
        const float *row = j->qkv + (b * T + t) * j->sq_n;
        for (int64_t i = 0; i < hd; i++) q[i] = row[(h * hd + i) * j->sq_m] * scale;
        const int64_t seen = j->past[b] + t + 1;
        float top = -INFINITY;
        for (int64_t s = 0; s < seen; s++) {
            const float dot = dot_product(q, kh + s * hd, hd);
            scores[s] = dot;
            top = dot > top ? dot : top;
        }
        float total = 0.0f;
        for (int64_t s = 0; s < seen; s++) {
            scores[s] = expf(scores[s] - top);
            total += scores[s];
        }
        float *o = j->out + (b * T + t) * d + h * hd;
        for (int64_t i = 0; i < hd; i++) o[i] = 0.0f;
        for (int64_t s = 0; s < seen; s++) {
            const float p = scores[s] / total, *vs = vh + s * hd;
            for (int64_t i = 0; i < hd; i++) o[i] += p * vs[i];
        }
    }
}

/* Causal attention of T new positions in each of B rows, over one layer's KV cache, as the
   NumPy engine's attention() computes it (which stays the reference, and runs whenever the
   attention weights are recorded): the new keys and values are written into the cache after
   row b's past[b] positions, then query t of row b sees keys 0 .. past[b] + t.

   qkv [B * T, 3 * H * hd] (strides sq_n, sq_m); keys and values: the layer's cache, element
   (b, h, s, j) at b * s_b + h * s_h + s * hd + j; out [B * T, H * hd], contiguous. scratch:
   B * H * (n_ctx + hd) floats (a row of scores and a scaled query for each (row, head) pair). */
void gpt2_attention(const float *qkv, int64_t B, int64_t T, int64_t sq_n, int64_t sq_m, float *keys, float *values,
                    int64_t s_b, int64_t s_h, const int64_t *past, int64_t H, int64_t hd, int64_t n_ctx, float *out,
                    int threads, float *scratch) {
    const int64_t d = H * hd;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *row = qkv + (b * T + t) * sq_n;
            for (int64_t h = 0; h < H; h++) {
                float *k = keys + b * s_b + h * s_h + (past[b] + t) * hd;
                float *v = values + b * s_b + h * s_h + (past[b] + t) * hd;
                for (int64_t j = 0; j < hd; j++) {
                    k[j] = row[(d + h * hd + j) * sq_m];
                    v[j] = row[(2 * d + h * hd + j) * sq_m];
                }
            }
        }
    AttentionJob job = {qkv, T, sq_n, sq_m, keys, values, s_b, s_h, past, H, hd, n_ctx, out, scratch};
    gpt2_run_units(attention_unit, &job, B * H, threads);
}
