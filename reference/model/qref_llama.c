/*
 * LLaMA forward pass in f32 (Hugging Face LlamaForCausalLM semantics), layer-streamed.
 *
 * For a batch of B windows of T tokens, with hidden size D, H query heads and KV key/value
 * heads of head_dim d, and MLP width F:
 *
 *   x = embed[tokens]                                     [B*T, D]
 *   per layer:
 *     h = rmsnorm(x) * input_layernorm
 *     q = h Wq^T [B*T, H*d], k = h Wk^T, v = h Wv^T [B*T, KV*d]
 *     q, k = rope(q, k)                                   rotate-half layout, theta from config
 *     a = causal softmax(q k^T / sqrt(d)) v               query head j reads KV head j / (H/KV)
 *     x = x + a Wo^T
 *     h = rmsnorm(x) * post_attention_layernorm
 *     x = x + (silu(h Wg^T) * (h Wu^T)) Wd^T
 *   logits = (rmsnorm(x) * norm) Wout^T                   [B*T, vocab]
 *
 * Dot products accumulate in eight interleaved f32 lanes that are summed in a fixed order, so
 * the compiler can vectorize them without reassociation and every element has the same value
 * whatever the thread count. RMSNorm sums of squares and softmax denominators use double.
 */
#include "model/qref_llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

const char *const qref_llama_linear_names[QREF_LLAMA_LINEAR_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

void qref_llama_linear_shape(const qref_llama_config *config, int index, int64_t *rows, int64_t *cols)
{
    int64_t hidden = config->hidden_size;
    int64_t q_width = (int64_t)config->num_attention_heads * config->head_dim;
    int64_t kv_width = (int64_t)config->num_key_value_heads * config->head_dim;
    int64_t ffn = config->intermediate_size;
    switch (index) {
    case 0: *rows = q_width; *cols = hidden; break;
    case 1:
    case 2: *rows = kv_width; *cols = hidden; break;
    case 3: *rows = hidden; *cols = q_width; break;
    case 4:
    case 5: *rows = ffn; *cols = hidden; break;
    default: *rows = hidden; *cols = ffn; break;
    }
}

void qref_llama_layer_tensor_name(char *buf, size_t size, int layer, const char *suffix)
{
    snprintf(buf, size, "model.layers.%d.%s", layer, suffix);
}

/* ---- kernels ---------------------------------------------------------------------------- */

/*
 * Dot products use eight interleaved f32 partial sums, held as two four-lane vectors (the
 * width of SSE and NEON registers; GCC/Clang vector extension). Lane l only ever sums the
 * products of elements l, l + 8, l + 16, ..., and the lanes are combined in a fixed order, so
 * the result does not depend on the instruction set the compiler targets.
 */
typedef float v4f __attribute__((vector_size(16)));
#define LANES 8

static inline v4f load_v4f(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

typedef struct lanes8 {
    v4f low, high; /* lanes 0-3 and 4-7 */
} lanes8;

static inline void lanes8_add_product(lanes8 *acc, const float *a, const float *b)
{
    acc->low += load_v4f(a) * load_v4f(b);
    acc->high += load_v4f(a + 4) * load_v4f(b + 4);
}

/* Adds the products of elements [start, n), fewer than eight, into lanes 0, 1, ... */
static inline void lanes8_add_tail(lanes8 *acc, const float *a, const float *b, int start, int n)
{
    for (int i = start, l = 0; i < n; i++, l++) {
        if (l < 4)
            acc->low[l] += a[i] * b[i];
        else
            acc->high[l - 4] += a[i] * b[i];
    }
}

static inline float lanes8_sum(const lanes8 *acc)
{
    v4f lo = acc->low, hi = acc->high;
    return ((lo[0] + lo[1]) + (lo[2] + lo[3])) + ((hi[0] + hi[1]) + (hi[2] + hi[3]));
}

/* Sum of a[i] * b[i] over eight interleaved partial sums, combined in a fixed order. */
static inline float dot_f32(const float *a, const float *b, int n)
{
    lanes8 acc = {{0}, {0}};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        lanes8_add_product(&acc, a + i, b + i);
    lanes8_add_tail(&acc, a, b, i, n);
    return lanes8_sum(&acc);
}

/* Four dot products of x with w0..w3; each result equals dot_f32(x, wj, n) bit for bit. */
static inline void dot4_f32(const float *x, const float *w0, const float *w1, const float *w2,
                            const float *w3, int n, float out[4])
{
    lanes8 a0 = {{0}, {0}}, a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        lanes8_add_product(&a0, x + i, w0 + i);
        lanes8_add_product(&a1, x + i, w1 + i);
        lanes8_add_product(&a2, x + i, w2 + i);
        lanes8_add_product(&a3, x + i, w3 + i);
    }
    lanes8_add_tail(&a0, x, w0, i, n);
    lanes8_add_tail(&a1, x, w1, i, n);
    lanes8_add_tail(&a2, x, w2, i, n);
    lanes8_add_tail(&a3, x, w3, i, n);
    out[0] = lanes8_sum(&a0);
    out[1] = lanes8_sum(&a1);
    out[2] = lanes8_sum(&a2);
    out[3] = lanes8_sum(&a3);
}

/* y[r][o] = x[r] . w[o] for r < n_rows, o < n_out; x is [n_rows][k], w is [n_out][k]. */
static void matmul_transposed(const float *x, int64_t n_rows, const float *w, int64_t n_out, int k,
                              float *y)
{
    const int64_t row_block = 16;
    const int64_t out_block = 64;
    int64_t n_row_blocks = (n_rows + row_block - 1) / row_block;
    int64_t n_out_blocks = (n_out + out_block - 1) / out_block;

#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t rb = 0; rb < n_row_blocks; rb++) {
        for (int64_t ob = 0; ob < n_out_blocks; ob++) {
            int64_t r_end = (rb + 1) * row_block < n_rows ? (rb + 1) * row_block : n_rows;
            int64_t o_end = (ob + 1) * out_block < n_out ? (ob + 1) * out_block : n_out;
            for (int64_t r = rb * row_block; r < r_end; r++) {
                const float *xr = x + r * k;
                float *yr = y + r * n_out;
                int64_t o = ob * out_block;
                for (; o + 4 <= o_end; o += 4)
                    dot4_f32(xr, w + o * k, w + (o + 1) * k, w + (o + 2) * k, w + (o + 3) * k, k,
                             yr + o);
                for (; o < o_end; o++)
                    yr[o] = dot_f32(xr, w + o * k, k);
            }
        }
    }
}

/* out[r] = weight * (x[r] / sqrt(mean(x[r]^2) + eps)) for each of n_rows rows of width n. */
static void rmsnorm_rows(const float *x, const float *weight, int64_t n_rows, int n, double eps,
                         float *out)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        double sum_squares = 0.0;
        for (int i = 0; i < n; i++)
            sum_squares += (double)xr[i] * xr[i];
        float inv_rms = (float)(1.0 / sqrt(sum_squares / n + eps));
        float *o = out + r * n;
        for (int i = 0; i < n; i++)
            o[i] = weight[i] * (xr[i] * inv_rms);
    }
}

/* ---- rotary embeddings ------------------------------------------------------------------ */

#define QREF_PI 3.14159265358979323846

void qref_llama_rope_inv_freq(const qref_llama_config *config, float *inv_freq)
{
    int half = config->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float exponent = (float)(2 * i) / (float)config->head_dim;
        inv_freq[i] = 1.0f / powf((float)config->rope_theta, exponent);
    }
    if (config->rope_scaling.type != QREF_ROPE_LLAMA3)
        return;

    /*
     * Llama 3.1 scaling (transformers _compute_llama3_parameters), in f32 as there: wavelengths
     * longer than original_context / low_freq_factor are divided by factor, shorter than
     * original_context / high_freq_factor kept, and in between interpolated with
     * s = (original_context / wavelength - low) / (high - low). A Python scalar divided by a
     * tensor is computed by PyTorch as reciprocal(tensor) * scalar, and so it is here.
     */
    const qref_rope_scaling *scaling = &config->rope_scaling;
    float factor = (float)scaling->factor;
    float low = (float)scaling->low_freq_factor, high = (float)scaling->high_freq_factor;
    float context = (float)scaling->original_max_position_embeddings;
    float low_freq_wavelength = (float)((double)scaling->original_max_position_embeddings / scaling->low_freq_factor);
    float high_freq_wavelength = (float)((double)scaling->original_max_position_embeddings / scaling->high_freq_factor);
    for (int i = 0; i < half; i++) {
        float wavelength = (1.0f / inv_freq[i]) * (float)(2.0 * QREF_PI);
        float scaled = wavelength > low_freq_wavelength ? inv_freq[i] / factor : inv_freq[i];
        if (!(wavelength < high_freq_wavelength) && !(wavelength > low_freq_wavelength)) {
            float smooth = ((1.0f / wavelength) * context - low) / (high - low);
            scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
        }
        inv_freq[i] = scaled;
    }
}

/* cos/sin tables [seq_len][head_dim/2]: angle = position * inv_freq[i], in f32 as transformers. */
static void rope_build_tables(const qref_llama_config *config, int seq_len, float *cos_table, float *sin_table)
{
    int half = config->head_dim / 2;
    float inv_freq[QREF_LLAMA_MAX_HEAD_DIM / 2];
    qref_llama_rope_inv_freq(config, inv_freq);
    for (int i = 0; i < half; i++) {
        for (int t = 0; t < seq_len; t++) {
            float angle = (float)t * inv_freq[i];
            cos_table[t * half + i] = cosf(angle);
            sin_table[t * half + i] = sinf(angle);
        }
    }
}

/* Rotates n_heads heads of one token in place: (x1, x2) -> (x1 c - x2 s, x2 c + x1 s). */
static void rope_apply(float *vec, int n_heads, int head_dim, const float *cos_row, const float *sin_row)
{
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *head = vec + h * head_dim;
        for (int i = 0; i < half; i++) {
            float x1 = head[i], x2 = head[i + half];
            head[i] = x1 * cos_row[i] - x2 * sin_row[i];
            head[i + half] = x2 * cos_row[i] + x1 * sin_row[i];
        }
    }
}

/* ---- one decoder layer ------------------------------------------------------------------ */

typedef struct layer_buffers {
    float *x;          /* [rows][D] residual stream */
    float *normed;     /* [rows][D] */
    float *scratch;    /* attention: q, k, v, attn, transposed keys; MLP: gate, up (same memory) */
    float *input;      /* [rows][max(D, H*d, F)] rounded linear inputs; NULL without round_input */
    float *score_rows; /* [threads][seq_len] attention scores */
    int threads;
    float *cos_table, *sin_table;
} layer_buffers;

/* Loads a tensor of rows x cols into a fresh buffer, or returns NULL with err set. */
static float *load_tensor(const qref_weight_provider *weights, const char *name, int64_t rows,
                          int64_t cols, qref_error *err)
{
    float *buffer = malloc((size_t)(rows * cols) * sizeof(float));
    if (buffer == NULL) {
        qref_error_set(err, QREF_ERR_NOMEM, "%s: cannot allocate %lld x %lld floats", name,
                       (long long)rows, (long long)cols);
        return NULL;
    }
    if (qref_weights_load(weights, name, rows, cols, buffer, err) != QREF_OK) {
        free(buffer);
        return NULL;
    }
    return buffer;
}

static float *load_layer_tensor(const qref_weight_provider *weights, int layer, const char *suffix,
                                int64_t rows, int64_t cols, qref_error *err)
{
    char name[256];
    qref_llama_layer_tensor_name(name, sizeof name, layer, suffix);
    return load_tensor(weights, name, rows, cols, err);
}

/* Formats the name of linear `index` of a layer, e.g. "model.layers.3.mlp.up_proj.weight". */
static void linear_tensor_name(char *buf, size_t size, int layer, int index)
{
    char suffix[64];
    snprintf(suffix, sizeof suffix, "%s.weight", qref_llama_linear_names[index]);
    qref_llama_layer_tensor_name(buf, size, layer, suffix);
}

static float *load_layer_linear(const qref_weight_provider *weights, const qref_llama_config *config,
                                int layer, int index, qref_error *err)
{
    int64_t rows, cols;
    qref_llama_linear_shape(config, index, &rows, &cols);
    char name[256];
    linear_tensor_name(name, sizeof name, layer, index);
    return load_tensor(weights, name, rows, cols, err);
}

/*
 * y = x w^T for the weight `name` (x: [n_rows][k], w: [n_out][k]). With a round_input provider
 * the product reads a rounded copy of x in `input`, so x itself stays as it was.
 */
static qref_status linear_apply(const qref_weight_provider *weights, const char *name, const float *x,
                                int64_t n_rows, const float *w, int64_t n_out, int k, float *input, float *y,
                                qref_error *err)
{
    if (weights->round_input != NULL) {
        memcpy(input, x, (size_t)(n_rows * k) * sizeof(float));
        qref_status status = weights->round_input(weights->ctx, name, input, n_rows, k, err);
        if (status != QREF_OK)
            return status;
        x = input;
    }
    matmul_transposed(x, n_rows, w, n_out, k, y);
    return QREF_OK;
}

/* linear_apply for linear `index` of a layer. */
static qref_status layer_linear_apply(const qref_weight_provider *weights, int layer, int index, const float *x,
                                      int64_t n_rows, const float *w, int64_t n_out, int k, float *input, float *y,
                                      qref_error *err)
{
    char name[256];
    linear_tensor_name(name, sizeof name, layer, index);
    return linear_apply(weights, name, x, n_rows, w, n_out, k, input, y, err);
}

/*
 * Scores of query q against keys s0..s0+3 of one head, from keys transposed to
 * key_t[i][s] (row stride seq_len). Element i of the head dimension goes to lane i % 8 and
 * the lanes are combined as in dot_f32, so each score equals dot_f32(q, k_s, d) bit for bit.
 */
static inline v4f scores4(const float *q, const float *key_t, int seq_len, int s0, int d)
{
    v4f l0 = {0}, l1 = {0}, l2 = {0}, l3 = {0}, l4 = {0}, l5 = {0}, l6 = {0}, l7 = {0};
    int i = 0;
    for (; i + LANES <= d; i += LANES) {
        const float *column = key_t + (size_t)i * seq_len + s0;
        l0 += q[i] * load_v4f(column);
        l1 += q[i + 1] * load_v4f(column + (size_t)seq_len);
        l2 += q[i + 2] * load_v4f(column + 2 * (size_t)seq_len);
        l3 += q[i + 3] * load_v4f(column + 3 * (size_t)seq_len);
        l4 += q[i + 4] * load_v4f(column + 4 * (size_t)seq_len);
        l5 += q[i + 5] * load_v4f(column + 5 * (size_t)seq_len);
        l6 += q[i + 6] * load_v4f(column + 6 * (size_t)seq_len);
        l7 += q[i + 7] * load_v4f(column + 7 * (size_t)seq_len);
    }
    /* the last d % 8 elements go to lanes 0, 1, ... as in dot_f32 */
    const float *column = key_t + (size_t)i * seq_len + s0;
    int rest = d - i;
    if (rest > 0)
        l0 += q[i] * load_v4f(column);
    if (rest > 1)
        l1 += q[i + 1] * load_v4f(column + (size_t)seq_len);
    if (rest > 2)
        l2 += q[i + 2] * load_v4f(column + 2 * (size_t)seq_len);
    if (rest > 3)
        l3 += q[i + 3] * load_v4f(column + 3 * (size_t)seq_len);
    if (rest > 4)
        l4 += q[i + 4] * load_v4f(column + 4 * (size_t)seq_len);
    if (rest > 5)
        l5 += q[i + 5] * load_v4f(column + 5 * (size_t)seq_len);
    if (rest > 6)
        l6 += q[i + 6] * load_v4f(column + 6 * (size_t)seq_len);
    return ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7));
}

/*
 * Causal grouped-query attention over n_windows windows of seq_len rows each. key_t is
 * scratch for the keys transposed per window and KV head: [window][kv head][d][seq_len];
 * score_rows holds one row of seq_len scores for each of at most `threads` threads.
 */
static void attention(const qref_llama_config *config, int64_t n_windows, int seq_len, const float *q,
                      const float *k, const float *v, float *key_t, float *score_rows, int threads,
                      float *out)
{
    int heads = config->num_attention_heads;
    int kv_heads = config->num_key_value_heads;
    int d = config->head_dim;
    int group = heads / kv_heads;
    int q_width = heads * d;
    int kv_width = kv_heads * d;
    float scale = 1.0f / sqrtf((float)d);

    /* key_t[b][j][i][s] = k[b * seq_len + s][j * d + i] */
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < n_windows; b++) {
        for (int j = 0; j < kv_heads; j++) {
            float *dst = key_t + ((size_t)b * kv_heads + j) * (size_t)d * seq_len;
            for (int s = 0; s < seq_len; s++)
                for (int i = 0; i < d; i++)
                    dst[(size_t)i * seq_len + s] = k[((size_t)b * seq_len + s) * kv_width + j * d + i];
        }
    }

#pragma omp parallel num_threads(threads)
    {
        float *scores = score_rows + (size_t)omp_get_thread_num() * (size_t)seq_len;
#pragma omp for collapse(3) schedule(static)
        for (int64_t b = 0; b < n_windows; b++) {
            for (int h = 0; h < heads; h++) {
                for (int t = 0; t < seq_len; t++) {
                    int64_t row = b * seq_len + t;
                    int kv = h / group;
                    const float *qt = q + row * q_width + h * d;
                    const float *k_base = k + b * seq_len * kv_width + kv * d;
                    const float *v_base = v + b * seq_len * kv_width + kv * d;
                    const float *head_key_t = key_t + ((size_t)b * kv_heads + kv) * (size_t)d * seq_len;

                    /* scores[s] = q . k_s / sqrt(d) for s <= t, four keys at a time */
                    int s = 0;
                    for (; s + 4 <= t + 1; s += 4) {
                        v4f block = scores4(qt, head_key_t, seq_len, s, d) * scale;
                        memcpy(scores + s, &block, sizeof block);
                    }
                    for (; s <= t; s++)
                        scores[s] = dot_f32(qt, k_base + (int64_t)s * kv_width, d) * scale;

                    float max_score = -INFINITY;
                    for (s = 0; s <= t; s++)
                        if (scores[s] > max_score)
                            max_score = scores[s];
                    double denominator = 0.0;
                    for (s = 0; s <= t; s++) {
                        scores[s] = expf(scores[s] - max_score);
                        denominator += scores[s];
                    }
                    float inv_denominator = (float)(1.0 / denominator);
                    for (s = 0; s <= t; s++)
                        scores[s] *= inv_denominator;

                    /*
                     * o[i] = sum over s of p_s v_s[i] in four partial sums (keys s = 0, 1, 2, 3
                     * mod 4 of the full blocks of four; the remaining keys go to the first),
                     * each in order of s and combined pairwise, so the additions need not wait
                     * on each other.
                     */
                    float *o = out + row * q_width + h * d;
                    if (d % 4 == 0) {
                        for (int j = 0; j < d; j += 4) {
                            v4f acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
                            const float *vj = v_base + j;
                            for (s = 0; s + 4 <= t + 1; s += 4) {
                                acc0 += scores[s] * load_v4f(vj + (int64_t)s * kv_width);
                                acc1 += scores[s + 1] * load_v4f(vj + (int64_t)(s + 1) * kv_width);
                                acc2 += scores[s + 2] * load_v4f(vj + (int64_t)(s + 2) * kv_width);
                                acc3 += scores[s + 3] * load_v4f(vj + (int64_t)(s + 3) * kv_width);
                            }
                            for (; s <= t; s++) /* the last (t + 1) % 4 keys */
                                acc0 += scores[s] * load_v4f(vj + (int64_t)s * kv_width);
                            v4f acc = (acc0 + acc1) + (acc2 + acc3);
                            memcpy(o + j, &acc, sizeof acc);
                        }
                    } else {
                        for (int i = 0; i < d; i++)
                            o[i] = 0.0f;
                        for (s = 0; s <= t; s++) {
                            const float *vs = v_base + (int64_t)s * kv_width;
                            for (int i = 0; i < d; i++)
                                o[i] += scores[s] * vs[i];
                        }
                    }
                }
            }
        }
    }
}

static qref_status layer_forward(const qref_llama_config *config, const qref_weight_provider *weights,
                                 int layer, int64_t n_windows, int seq_len, layer_buffers *buf,
                                 qref_error *err)
{
    int64_t rows = n_windows * seq_len;
    int dim = config->hidden_size;
    int q_width = config->num_attention_heads * config->head_dim;
    int kv_width = config->num_key_value_heads * config->head_dim;
    int ffn = config->intermediate_size;
    float *norm_weight = NULL, *w_a = NULL, *w_b = NULL, *w_c = NULL;

    /* attention block: h = rmsnorm(x); q, k, v = h W^T   [rows, q_width | kv_width] */
    float *q = buf->scratch;
    float *k = q + rows * q_width;
    float *v = k + rows * kv_width;
    float *attn = v + rows * kv_width;

    norm_weight = load_layer_tensor(weights, layer, "input_layernorm.weight", dim, 1, err);
    if (norm_weight == NULL)
        goto fail;
    rmsnorm_rows(buf->x, norm_weight, rows, dim, config->rms_norm_eps, buf->normed);

    if ((w_a = load_layer_linear(weights, config, layer, 0, err)) == NULL ||
        (w_b = load_layer_linear(weights, config, layer, 1, err)) == NULL ||
        (w_c = load_layer_linear(weights, config, layer, 2, err)) == NULL)
        goto fail;
    if (layer_linear_apply(weights, layer, 0, buf->normed, rows, w_a, q_width, dim, buf->input, q, err) ||
        layer_linear_apply(weights, layer, 1, buf->normed, rows, w_b, kv_width, dim, buf->input, k, err) ||
        layer_linear_apply(weights, layer, 2, buf->normed, rows, w_c, kv_width, dim, buf->input, v, err))
        goto fail;
    free(w_a), free(w_b), free(w_c);
    w_a = w_b = w_c = NULL;

    /* rotary embeddings on q and k; position = row index within its window */
    int half = config->head_dim / 2;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int t = (int)(r % seq_len);
        rope_apply(q + r * q_width, config->num_attention_heads, config->head_dim,
                   buf->cos_table + t * half, buf->sin_table + t * half);
        rope_apply(k + r * kv_width, config->num_key_value_heads, config->head_dim,
                   buf->cos_table + t * half, buf->sin_table + t * half);
    }

    float *key_t = attn + rows * q_width;
    attention(config, n_windows, seq_len, q, k, v, key_t, buf->score_rows, buf->threads, attn);

    /* x += attn Wo^T   [rows, dim] (the product goes to `normed`, which is free now) */
    if ((w_a = load_layer_linear(weights, config, layer, 3, err)) == NULL)
        goto fail;
    if (layer_linear_apply(weights, layer, 3, attn, rows, w_a, dim, q_width, buf->input, buf->normed, err))
        goto fail;
    free(w_a);
    w_a = NULL;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows * dim; i++)
        buf->x[i] += buf->normed[i];

    /* MLP block: h = rmsnorm(x); x += (silu(h Wg^T) * h Wu^T) Wd^T   gate, up: [rows, ffn] */
    float *gate = buf->scratch;
    float *up = gate + rows * ffn;
    free(norm_weight);
    norm_weight = load_layer_tensor(weights, layer, "post_attention_layernorm.weight", dim, 1, err);
    if (norm_weight == NULL)
        goto fail;
    rmsnorm_rows(buf->x, norm_weight, rows, dim, config->rms_norm_eps, buf->normed);

    if ((w_a = load_layer_linear(weights, config, layer, 4, err)) == NULL ||
        (w_b = load_layer_linear(weights, config, layer, 5, err)) == NULL)
        goto fail;
    if (layer_linear_apply(weights, layer, 4, buf->normed, rows, w_a, ffn, dim, buf->input, gate, err) ||
        layer_linear_apply(weights, layer, 5, buf->normed, rows, w_b, ffn, dim, buf->input, up, err))
        goto fail;
    free(w_a), free(w_b);
    w_a = w_b = NULL;

#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows * ffn; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }

    if ((w_a = load_layer_linear(weights, config, layer, 6, err)) == NULL)
        goto fail;
    if (layer_linear_apply(weights, layer, 6, gate, rows, w_a, dim, ffn, buf->input, buf->normed, err))
        goto fail;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < rows * dim; i++)
        buf->x[i] += buf->normed[i];
    free(w_a);
    free(norm_weight);
    return QREF_OK;

fail:
    free(norm_weight);
    free(w_a);
    free(w_b);
    free(w_c);
    return err->status;
}

/* ---- the whole model over a batch of windows -------------------------------------------- */

static qref_status check_tokens(const qref_llama_config *config, const int32_t *tokens, size_t count,
                                int seq_len, qref_error *err)
{
    for (size_t i = 0; i < count; i++) {
        if (tokens[i] >= 0 && tokens[i] < config->vocab_size)
            continue;
        char where[64];
        if (count == (size_t)seq_len)
            snprintf(where, sizeof where, "position %zu", i);
        else
            snprintf(where, sizeof where, "window %zu, position %zu", i / (size_t)seq_len, i % (size_t)seq_len);
        return qref_error_set(err, QREF_ERR_INVALID, "%s: token id %d is outside the vocabulary (expected 0 to %d)",
                              where, tokens[i], config->vocab_size - 1);
    }
    return QREF_OK;
}

/* Widest input of a linear: hidden size, attention width or MLP width. */
static size_t max_linear_input(const qref_llama_config *config)
{
    size_t width = (size_t)config->hidden_size;
    size_t q_width = (size_t)config->num_attention_heads * config->head_dim;
    if (q_width > width)
        width = q_width;
    if ((size_t)config->intermediate_size > width)
        width = (size_t)config->intermediate_size;
    return width;
}

/* Bytes of activations one window needs between and inside layers (with rounded inputs when asked). */
static size_t window_activation_bytes(const qref_llama_config *config, int seq_len, bool rounded_inputs)
{
    size_t q_width = (size_t)config->num_attention_heads * config->head_dim;
    size_t kv_width = (size_t)config->num_key_value_heads * config->head_dim;
    size_t attention_floats = 2 * q_width + 3 * kv_width;
    size_t mlp_floats = 2 * (size_t)config->intermediate_size;
    size_t scratch = attention_floats > mlp_floats ? attention_floats : mlp_floats;
    size_t input = rounded_inputs ? max_linear_input(config) : 0;
    return (size_t)seq_len * (2 * (size_t)config->hidden_size + scratch + input) * sizeof(float);
}

static qref_status batch_forward(const qref_llama_config *config, const qref_weight_provider *weights,
                                 const int32_t *tokens, size_t first_window, size_t n_windows,
                                 int seq_len, const qref_forward_options *options, layer_buffers *buf,
                                 qref_logits_sink sink, void *sink_ctx, qref_error *err)
{
    int dim = config->hidden_size;
    int vocab = config->vocab_size;
    int64_t rows = (int64_t)n_windows * seq_len;

    /* x = embed[tokens] */
    float *embed = load_tensor(weights, "model.embed_tokens.weight", vocab, dim, err);
    if (embed == NULL)
        return err->status;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        memcpy(buf->x + r * dim, embed + (int64_t)tokens[r] * dim, (size_t)dim * sizeof(float));
    free(embed);

    for (int layer = 0; layer < config->num_hidden_layers; layer++) {
        qref_status status = layer_forward(config, weights, layer, (int64_t)n_windows, seq_len, buf, err);
        if (status != QREF_OK)
            return status;
    }

    /* final norm, then logits = h Wout^T in chunks of positions */
    float *norm_weight = load_tensor(weights, "model.norm.weight", dim, 1, err);
    if (norm_weight == NULL)
        return err->status;
    rmsnorm_rows(buf->x, norm_weight, rows, dim, config->rms_norm_eps, buf->normed);
    free(norm_weight);

    const char *output_name = config->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    float *output = load_tensor(weights, output_name, vocab, dim, err);
    if (output == NULL)
        return err->status;

    int chunk = options->logits_chunk > 0 ? options->logits_chunk : 64;
    float *logits = malloc((size_t)chunk * (size_t)vocab * sizeof(float));
    if (logits == NULL) {
        free(output);
        return qref_error_set(err, QREF_ERR_NOMEM, "cannot allocate logits for %d positions", chunk);
    }
    qref_status status = QREF_OK;
    for (size_t b = 0; b < n_windows && status == QREF_OK; b++) {
        for (int p = options->first_scored_position; p < seq_len && status == QREF_OK; p += chunk) {
            int count = seq_len - p < chunk ? seq_len - p : chunk;
            status = linear_apply(weights, output_name, buf->normed + ((int64_t)b * seq_len + p) * dim, count,
                                  output, vocab, dim, buf->input, logits, err);
            if (status == QREF_OK)
                status = sink(sink_ctx, first_window + b, p, count, logits, err);
        }
    }
    free(logits);
    free(output);
    return status;
}

qref_status qref_llama_forward(const qref_llama_config *config, const qref_weight_provider *weights,
                               const int32_t *tokens, size_t n_windows, int seq_len,
                               const qref_forward_options *options, qref_logits_sink sink,
                               void *sink_ctx, qref_error *err)
{
    qref_forward_options defaults = {0};
    if (options == NULL)
        options = &defaults;
    qref_error local_err;
    if (err == NULL)
        err = &local_err;
    if (seq_len <= 0 || n_windows == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "forward: need at least one window of one token "
                              "(got %zu windows of %d tokens)", n_windows, seq_len);
    if (options->first_scored_position < 0 || options->first_scored_position >= seq_len)
        return qref_error_set(err, QREF_ERR_INTERNAL, "forward: first scored position %d outside [0, %d)",
                              options->first_scored_position, seq_len);
    if (config->head_dim % 2 != 0 || config->head_dim > QREF_LLAMA_MAX_HEAD_DIM)
        return qref_error_set(err, QREF_ERR_UNSUPPORTED, "config: head_dim %d is not supported (expected an even "
                              "number up to %d)", config->head_dim, QREF_LLAMA_MAX_HEAD_DIM);
    qref_status status = check_tokens(config, tokens, n_windows * (size_t)seq_len, seq_len, err);
    if (status != QREF_OK)
        return status;

    /* as many windows per batch as the activation budget allows, at least one */
    size_t budget = options->activation_budget ? options->activation_budget : (size_t)1 << 30;
    bool rounded_inputs = weights->round_input != NULL;
    size_t per_window = window_activation_bytes(config, seq_len, rounded_inputs);
    size_t batch = budget / per_window;
    if (batch < 1)
        batch = 1;
    if (batch > n_windows)
        batch = n_windows;

    layer_buffers buf = {0};
    size_t half = (size_t)config->head_dim / 2;
    buf.threads = omp_get_max_threads();
    buf.x = malloc(batch * per_window);
    buf.score_rows = malloc((size_t)buf.threads * (size_t)seq_len * sizeof(float));
    buf.cos_table = malloc((size_t)seq_len * half * sizeof(float));
    buf.sin_table = malloc((size_t)seq_len * half * sizeof(float));
    if (buf.x == NULL || buf.score_rows == NULL || buf.cos_table == NULL || buf.sin_table == NULL) {
        status = qref_error_set(err, QREF_ERR_NOMEM, "forward: cannot allocate %zu bytes of "
                                "activations for %zu windows", batch * per_window, batch);
        goto done;
    }
    buf.normed = buf.x + batch * (size_t)seq_len * config->hidden_size;
    buf.scratch = buf.normed + batch * (size_t)seq_len * config->hidden_size;
    if (rounded_inputs) /* the last max_linear_input floats of each window's share */
        buf.input = buf.x + batch * (per_window / sizeof(float) - (size_t)seq_len * max_linear_input(config));
    rope_build_tables(config, seq_len, buf.cos_table, buf.sin_table);

    for (size_t first = 0; first < n_windows && status == QREF_OK; first += batch) {
        size_t count = n_windows - first < batch ? n_windows - first : batch;
        status = batch_forward(config, weights, tokens + first * (size_t)seq_len, first, count, seq_len,
                               options, &buf, sink, sink_ctx, err);
    }

done:
    free(buf.x);
    free(buf.score_rows);
    free(buf.cos_table);
    free(buf.sin_table);
    return status;
}
