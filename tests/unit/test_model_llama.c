/*
 * LLaMA forward: the stories260k golden from llama2.c, agreement with a plain float64
 * implementation of the Hugging Face formulas on a small random model (grouped-query
 * attention, untied output, rope_theta other than 10000), independence from the thread
 * count and from how windows are batched, and input errors.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "io/qref_snapshot.h"
#include "model/qref_config.h"
#include "model/qref_llama.h"
#include "model/qref_tensor_weights.h"

/* ---- stories260k against llama2.c ------------------------------------------------------- */

/* Input ids of fixtures/goldens/stories260k-once-upon-a-time.json (BOS, "Once upon a time", greedy continuation). */
static const int32_t stories_ids[40] = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
                                        317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265,
                                        282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432};

typedef struct logits_capture {
    float *values; /* [windows][positions][vocab] */
    int positions;
    int vocab;
} logits_capture;

static qref_status capture_logits(void *ctx, size_t window, int position, int count, const float *logits,
                                  qref_error *err)
{
    (void)err;
    logits_capture *capture = ctx;
    size_t offset = (window * (size_t)capture->positions + (size_t)position) * (size_t)capture->vocab;
    memcpy(capture->values + offset, logits, (size_t)count * (size_t)capture->vocab * sizeof(float));
    return QREF_OK;
}

typedef struct stories_model {
    qref_snapshot *snapshot;
    qref_llama_config config;
    qref_tensor_weights tensor_weights;
    qref_weight_provider weights;
} stories_model;

static void stories_open(stories_model *model)
{
    qref_error err = {0};
    assert_int_equal(qref_snapshot_open(test_fixture_path("models/stories260k"), &model->snapshot, &err), QREF_OK);
    const qref_blob *config = qref_snapshot_find_file(model->snapshot, "config.json");
    assert_non_null(config);
    assert_int_equal(qref_llama_config_parse("config.json", (const char *)config->data, config->size,
                                             &model->config, &err),
                     QREF_OK);
    model->tensor_weights.tensors = qref_snapshot_tensors(model->snapshot);
    model->tensor_weights.codec = NULL;
    model->tensor_weights.codec_config = NULL;
    qref_tensor_weights_provider(&model->tensor_weights, &model->weights);
}

static void stories260k_matches_llama2c(void **state)
{
    (void)state;
    stories_model model;
    stories_open(&model);
    int vocab = model.config.vocab_size;
    float *logits = malloc(40 * (size_t)vocab * sizeof(float));
    logits_capture capture = {logits, 40, vocab};
    qref_error err = {0};
    assert_int_equal(qref_llama_forward(&model.config, &model.weights, stories_ids, 1, 40, NULL, capture_logits,
                                        &capture, &err),
                     QREF_OK);

    /* llama2.c run.c, fp32 -ffp-contract=off, on the original stories260K.bin: 1e-4 absolute */
    size_t size = 0;
    char *golden = test_read_file(test_fixture_path("goldens/stories260k-once-upon-a-time.logits.f32"), &size);
    assert_int_equal(size, 40 * (size_t)vocab * sizeof(float));
    double max_error = 0.0;
    for (size_t i = 0; i < 40 * (size_t)vocab; i++) {
        float expected;
        memcpy(&expected, golden + 4 * i, sizeof expected);
        double error = fabs((double)logits[i] - expected);
        if (error > max_error)
            max_error = error;
    }
    print_message("stories260k: max |logit - llama2.c| = %.3g\n", max_error);
    assert_true(max_error <= 1e-4);
    free(golden);
    free(logits);
    qref_snapshot_free(model.snapshot);
}

/* Runs n_windows windows through stories260k with the given thread count and batch budget. */
static float *stories_forward(stories_model *model, const int32_t *tokens, size_t n_windows, int seq_len,
                              int threads, size_t activation_budget)
{
    int vocab = model->config.vocab_size;
    float *logits = malloc(n_windows * (size_t)seq_len * (size_t)vocab * sizeof(float));
    logits_capture capture = {logits, seq_len, vocab};
    qref_forward_options options = {.activation_budget = activation_budget, .logits_chunk = 7};
    qref_error err = {0};
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    assert_int_equal(qref_llama_forward(&model->config, &model->weights, tokens, n_windows, seq_len, &options,
                                        capture_logits, &capture, &err),
                     QREF_OK);
    omp_set_num_threads(saved);
    return logits;
}

static void forward_independent_of_threads_and_batching(void **state)
{
    (void)state;
    stories_model model;
    stories_open(&model);
    enum { WINDOWS = 5, SEQ = 33 };
    int32_t tokens[WINDOWS * SEQ];
    test_rng rng = {.state = 7};
    for (size_t i = 0; i < WINDOWS * SEQ; i++)
        tokens[i] = (int32_t)(test_rng_next(&rng) % (uint64_t)model.config.vocab_size);
    size_t bytes = (size_t)WINDOWS * SEQ * (size_t)model.config.vocab_size * sizeof(float);

    /* one thread, all windows in one batch: the baseline */
    float *one = stories_forward(&model, tokens, WINDOWS, SEQ, 1, 0);
    float *two = stories_forward(&model, tokens, WINDOWS, SEQ, 2, 0);
    float *three = stories_forward(&model, tokens, WINDOWS, SEQ, 3, 0);
    float *batched = stories_forward(&model, tokens, WINDOWS, SEQ, 2, 1); /* budget of 1 byte: one window per batch */
    assert_memory_equal(one, two, bytes);
    assert_memory_equal(one, three, bytes);
    assert_memory_equal(one, batched, bytes);
    free(one);
    free(two);
    free(three);
    free(batched);
    qref_snapshot_free(model.snapshot);
}

/*
 * F16 and BF16 snapshots run in f32: stories260k's tensors stored as F16 (or BF16) give the
 * same logits, bit for bit, as F32 tensors holding the same rounded values.
 */
static void half_precision_weights_widened_exactly(void **state)
{
    (void)state;
    stories_model model;
    stories_open(&model);
    const qref_tensor_set *tensors = model.tensor_weights.tensors;
    int vocab = model.config.vocab_size;
    const qref_dtype dtypes[2] = {QREF_DTYPE_F16, QREF_DTYPE_BF16};

    for (int d = 0; d < 2; d++) {
        /* half: the stored 16-bit tensors; rounded: F32 tensors with the same values */
        qref_tensor_set half = {calloc(tensors->count, sizeof(qref_tensor)), tensors->count};
        qref_tensor_set rounded = {calloc(tensors->count, sizeof(qref_tensor)), tensors->count};
        for (size_t i = 0; i < tensors->count; i++) {
            const qref_tensor *source = &tensors->items[i];
            float *values = malloc(source->numel * sizeof(float));
            uint8_t *bits = malloc(source->numel * 2);
            qref_error err = {0};
            assert_int_equal(qref_convert_to_f32(source->dtype, source->data, source->numel, values, &err), QREF_OK);
            for (uint64_t k = 0; k < source->numel; k++) {
                uint16_t h = dtypes[d] == QREF_DTYPE_F16 ? qref_f32_to_f16(values[k]) : qref_f32_to_bf16(values[k]);
                qref_store_u16(bits + 2 * k, h);
                values[k] = dtypes[d] == QREF_DTYPE_F16 ? qref_f16_to_f32(h) : qref_bf16_to_f32(h);
            }
            half.items[i] = *source;
            half.items[i].name = strdup(source->name);
            half.items[i].dtype = dtypes[d];
            half.items[i].nbytes = source->numel * 2;
            half.items[i].data = bits;
            rounded.items[i] = *source;
            rounded.items[i].name = strdup(source->name);
            rounded.items[i].data = (const uint8_t *)values;
        }

        float *logits[2];
        qref_tensor_set *sets[2] = {&half, &rounded};
        for (int k = 0; k < 2; k++) {
            qref_tensor_weights weights = {sets[k], NULL, NULL};
            qref_weight_provider provider;
            qref_tensor_weights_provider(&weights, &provider);
            logits[k] = malloc(40 * (size_t)vocab * sizeof(float));
            logits_capture capture = {logits[k], 40, vocab};
            qref_error err = {0};
            assert_int_equal(qref_llama_forward(&model.config, &provider, stories_ids, 1, 40, NULL, capture_logits,
                                                &capture, &err),
                             QREF_OK);
        }
        assert_memory_equal(logits[0], logits[1], 40 * (size_t)vocab * sizeof(float));
        for (int k = 0; k < 2; k++) {
            free(logits[k]);
            for (size_t i = 0; i < sets[k]->count; i++)
                free((void *)sets[k]->items[i].data);
            qref_tensor_set_free(sets[k]);
        }
    }
    qref_snapshot_free(model.snapshot);
}

/* ---- a small random model against a float64 implementation ------------------------------ */

enum { TINY_VOCAB = 11, TINY_DIM = 16, TINY_HEADS = 4, TINY_KV = 2, TINY_HEAD_DIM = 6, TINY_FFN = 20,
       TINY_LAYERS = 2, TINY_SEQ = 9 };

typedef struct named_tensor {
    char name[96];
    int64_t rows, cols;
    float *values;
} named_tensor;

typedef struct tiny_model {
    qref_llama_config config;
    named_tensor tensors[64];
    int count;
} tiny_model;

static float *tiny_add(tiny_model *model, test_rng *rng, const char *name, int64_t rows, int64_t cols, float scale,
                       float offset)
{
    named_tensor *t = &model->tensors[model->count++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->values = malloc((size_t)(rows * cols) * sizeof(float));
    for (int64_t i = 0; i < rows * cols; i++)
        t->values[i] = offset + scale * test_rng_float(rng);
    return t->values;
}

static const float *tiny_get(const tiny_model *model, const char *name)
{
    for (int i = 0; i < model->count; i++)
        if (strcmp(model->tensors[i].name, name) == 0)
            return model->tensors[i].values;
    return NULL;
}

static qref_status tiny_load(void *ctx, const char *name, int64_t rows, int64_t cols, float *dst, qref_error *err)
{
    const tiny_model *model = ctx;
    for (int i = 0; i < model->count; i++) {
        const named_tensor *t = &model->tensors[i];
        if (strcmp(t->name, name) == 0) {
            if (t->rows != rows || t->cols != cols)
                return qref_error_set(err, QREF_ERR_INVALID, "%s: shape mismatch", name);
            memcpy(dst, t->values, (size_t)(rows * cols) * sizeof(float));
            return QREF_OK;
        }
    }
    return qref_error_set(err, QREF_ERR_INVALID, "tensor \"%s\" not found", name);
}

static void tiny_build(tiny_model *model)
{
    memset(model, 0, sizeof *model);
    qref_llama_config *c = &model->config;
    c->vocab_size = TINY_VOCAB;
    c->hidden_size = TINY_DIM;
    c->intermediate_size = TINY_FFN;
    c->num_hidden_layers = TINY_LAYERS;
    c->num_attention_heads = TINY_HEADS;
    c->num_key_value_heads = TINY_KV;
    c->head_dim = TINY_HEAD_DIM; /* heads x head_dim = 24, not the hidden size */
    c->max_position_embeddings = 64;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 500000.0;
    c->tie_word_embeddings = false;

    test_rng rng = {.state = 2024};
    tiny_add(model, &rng, "model.embed_tokens.weight", TINY_VOCAB, TINY_DIM, 1.0f, 0.0f);
    for (int layer = 0; layer < TINY_LAYERS; layer++) {
        char name[96];
        qref_llama_layer_tensor_name(name, sizeof name, layer, "input_layernorm.weight");
        tiny_add(model, &rng, name, TINY_DIM, 1, 0.2f, 1.0f);
        qref_llama_layer_tensor_name(name, sizeof name, layer, "post_attention_layernorm.weight");
        tiny_add(model, &rng, name, TINY_DIM, 1, 0.2f, 1.0f);
        for (int k = 0; k < QREF_LLAMA_LINEAR_COUNT; k++) {
            int64_t rows, cols;
            qref_llama_linear_shape(c, k, &rows, &cols);
            char suffix[64];
            snprintf(suffix, sizeof suffix, "%s.weight", qref_llama_linear_names[k]);
            qref_llama_layer_tensor_name(name, sizeof name, layer, suffix);
            tiny_add(model, &rng, name, rows, cols, 0.5f, 0.0f);
        }
    }
    tiny_add(model, &rng, "model.norm.weight", TINY_DIM, 1, 0.2f, 1.0f);
    tiny_add(model, &rng, "lm_head.weight", TINY_VOCAB, TINY_DIM, 1.0f, 0.0f);
}

static void tiny_free(tiny_model *model)
{
    for (int i = 0; i < model->count; i++)
        free(model->tensors[i].values);
}

/* y[r] = W x for W [rows][cols], in double. */
static void matvec64(const float *w, const double *x, int rows, int cols, double *y)
{
    for (int r = 0; r < rows; r++) {
        double sum = 0.0;
        for (int c = 0; c < cols; c++)
            sum += (double)w[r * cols + c] * x[c];
        y[r] = sum;
    }
}

static void rmsnorm64(const double *x, const float *weight, int n, double eps, double *out)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += x[i] * x[i];
    double inv = 1.0 / sqrt(sum / n + eps);
    for (int i = 0; i < n; i++)
        out[i] = weight[i] * x[i] * inv;
}

/*
 * The Hugging Face LlamaForCausalLM forward written out directly in float64: rotate-half RoPE
 * with inv_freq = theta^(-2i/d), query head h reading KV head h / (H / KV), softmax with the
 * 1/sqrt(d) scale, SwiGLU, final norm and a separate lm_head.
 */
static void tiny_reference_forward(const tiny_model *model, const int32_t *tokens, double *logits)
{
    const qref_llama_config *c = &model->config;
    enum { Q = TINY_HEADS * TINY_HEAD_DIM, KVW = TINY_KV * TINY_HEAD_DIM, HALF = TINY_HEAD_DIM / 2 };
    static double x[TINY_SEQ][TINY_DIM], h[TINY_SEQ][TINY_DIM], q[TINY_SEQ][Q], k[TINY_SEQ][KVW], v[TINY_SEQ][KVW],
        a[TINY_SEQ][Q];
    for (int t = 0; t < TINY_SEQ; t++)
        for (int i = 0; i < TINY_DIM; i++)
            x[t][i] = tiny_get(model, "model.embed_tokens.weight")[tokens[t] * TINY_DIM + i];

    for (int layer = 0; layer < TINY_LAYERS; layer++) {
        char name[96];
#define LAYER_TENSOR(suffix) (qref_llama_layer_tensor_name(name, sizeof name, layer, suffix), tiny_get(model, name))
        for (int t = 0; t < TINY_SEQ; t++) {
            rmsnorm64(x[t], LAYER_TENSOR("input_layernorm.weight"), TINY_DIM, c->rms_norm_eps, h[t]);
            matvec64(LAYER_TENSOR("self_attn.q_proj.weight"), h[t], Q, TINY_DIM, q[t]);
            matvec64(LAYER_TENSOR("self_attn.k_proj.weight"), h[t], KVW, TINY_DIM, k[t]);
            matvec64(LAYER_TENSOR("self_attn.v_proj.weight"), h[t], KVW, TINY_DIM, v[t]);
            for (int i = 0; i < HALF; i++) {
                double angle = t * pow(c->rope_theta, -2.0 * i / TINY_HEAD_DIM);
                double cs = cos(angle), sn = sin(angle);
                for (int head = 0; head < TINY_HEADS; head++) {
                    double *vec = q[t] + head * TINY_HEAD_DIM, x1 = vec[i], x2 = vec[i + HALF];
                    vec[i] = x1 * cs - x2 * sn;
                    vec[i + HALF] = x2 * cs + x1 * sn;
                }
                for (int head = 0; head < TINY_KV; head++) {
                    double *vec = k[t] + head * TINY_HEAD_DIM, x1 = vec[i], x2 = vec[i + HALF];
                    vec[i] = x1 * cs - x2 * sn;
                    vec[i + HALF] = x2 * cs + x1 * sn;
                }
            }
        }
        for (int t = 0; t < TINY_SEQ; t++) {
            for (int head = 0; head < TINY_HEADS; head++) {
                int kv = head / (TINY_HEADS / TINY_KV);
                double scores[TINY_SEQ], max = -INFINITY, sum = 0.0;
                for (int s = 0; s <= t; s++) {
                    double dot = 0.0;
                    for (int i = 0; i < TINY_HEAD_DIM; i++)
                        dot += q[t][head * TINY_HEAD_DIM + i] * k[s][kv * TINY_HEAD_DIM + i];
                    scores[s] = dot / sqrt((double)TINY_HEAD_DIM);
                    max = fmax(max, scores[s]);
                }
                for (int s = 0; s <= t; s++)
                    sum += (scores[s] = exp(scores[s] - max));
                for (int i = 0; i < TINY_HEAD_DIM; i++) {
                    double out = 0.0;
                    for (int s = 0; s <= t; s++)
                        out += scores[s] / sum * v[s][kv * TINY_HEAD_DIM + i];
                    a[t][head * TINY_HEAD_DIM + i] = out;
                }
            }
        }
        for (int t = 0; t < TINY_SEQ; t++) {
            double o[TINY_DIM], g[TINY_FFN], u[TINY_FFN], d[TINY_DIM];
            matvec64(LAYER_TENSOR("self_attn.o_proj.weight"), a[t], TINY_DIM, Q, o);
            for (int i = 0; i < TINY_DIM; i++)
                x[t][i] += o[i];
            rmsnorm64(x[t], LAYER_TENSOR("post_attention_layernorm.weight"), TINY_DIM, c->rms_norm_eps, h[t]);
            matvec64(LAYER_TENSOR("mlp.gate_proj.weight"), h[t], TINY_FFN, TINY_DIM, g);
            matvec64(LAYER_TENSOR("mlp.up_proj.weight"), h[t], TINY_FFN, TINY_DIM, u);
            for (int i = 0; i < TINY_FFN; i++)
                g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            matvec64(LAYER_TENSOR("mlp.down_proj.weight"), g, TINY_DIM, TINY_FFN, d);
            for (int i = 0; i < TINY_DIM; i++)
                x[t][i] += d[i];
        }
#undef LAYER_TENSOR
    }
    for (int t = 0; t < TINY_SEQ; t++) {
        rmsnorm64(x[t], tiny_get(model, "model.norm.weight"), TINY_DIM, c->rms_norm_eps, h[t]);
        matvec64(tiny_get(model, "lm_head.weight"), h[t], TINY_VOCAB, TINY_DIM, logits + t * TINY_VOCAB);
    }
}

static void tiny_model_matches_float64_formulas(void **state)
{
    (void)state;
    tiny_model model;
    tiny_build(&model);
    int32_t tokens[TINY_SEQ] = {3, 1, 4, 1, 5, 9, 2, 6, 5};
    double expected[TINY_SEQ * TINY_VOCAB];
    tiny_reference_forward(&model, tokens, expected);

    float logits[TINY_SEQ * TINY_VOCAB];
    logits_capture capture = {logits, TINY_SEQ, TINY_VOCAB};
    qref_weight_provider provider = {&model, tiny_load, NULL};
    qref_error err = {0};
    assert_int_equal(qref_llama_forward(&model.config, &provider, tokens, 1, TINY_SEQ, NULL, capture_logits,
                                        &capture, &err),
                     QREF_OK);
    /* f32 against float64 on values of order 1-10 through two layers: 1e-4 absolute */
    for (int i = 0; i < TINY_SEQ * TINY_VOCAB; i++)
        assert_true(fabs(logits[i] - expected[i]) <= 1e-4);
    tiny_free(&model);
}

/*
 * Llama 3.1 RoPE scaling with its published settings (theta 500000, head_dim 128, factor 8,
 * low 1, high 4, original context 8192), against the transformers formula in float64:
 * wavelengths 2 pi / inv_freq below 8192 / 4 = 2048 keep inv_freq (indices 0..28), above
 * 8192 / 1 are divided by 8 (indices 35..63), and in between are interpolated (29..34).
 */
static void rope_llama3_scaling(void **state)
{
    (void)state;
    qref_llama_config config = {.head_dim = 128, .rope_theta = 500000.0};
    config.rope_scaling = (qref_rope_scaling){QREF_ROPE_LLAMA3, 8.0, 1.0, 4.0, 8192};
    float inv_freq[64];
    qref_llama_rope_inv_freq(&config, inv_freq);
    int kept = 0, divided = 0, interpolated = 0;
    for (int i = 0; i < 64; i++) {
        double base = pow(500000.0, -2.0 * i / 128.0);
        double wavelength = 2.0 * 3.14159265358979323846 / base;
        double expected = base;
        if (wavelength > 8192.0) {
            expected = base / 8.0;
            divided++;
        } else if (wavelength >= 2048.0) {
            double smooth = (8192.0 / wavelength - 1.0) / (4.0 - 1.0);
            expected = (1.0 - smooth) * base / 8.0 + smooth * base;
            interpolated++;
        } else {
            kept++;
        }
        assert_true(fabs(inv_freq[i] - expected) <= 1e-6 * expected);
    }
    assert_int_equal(kept, 29);
    assert_int_equal(interpolated, 6);
    assert_int_equal(divided, 29);

    /* without scaling the same config keeps theta^(-2i/d) */
    config.rope_scaling.type = QREF_ROPE_DEFAULT;
    qref_llama_rope_inv_freq(&config, inv_freq);
    assert_true(fabs(inv_freq[63] - pow(500000.0, -126.0 / 128.0)) <= 1e-6 * pow(500000.0, -126.0 / 128.0));
}

static void token_outside_vocabulary_rejected(void **state)
{
    (void)state;
    tiny_model model;
    tiny_build(&model);
    int32_t tokens[3] = {1, TINY_VOCAB, 2};
    float logits[3 * TINY_VOCAB];
    logits_capture capture = {logits, 3, TINY_VOCAB};
    qref_weight_provider provider = {&model, tiny_load, NULL};
    qref_error err = {0};
    assert_int_equal(qref_llama_forward(&model.config, &provider, tokens, 1, 3, NULL, capture_logits, &capture, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "token id 11 is outside the vocabulary"));
    tiny_free(&model);
}

static void missing_tensor_reported(void **state)
{
    (void)state;
    tiny_model model;
    tiny_build(&model);
    snprintf(model.tensors[5].name, sizeof model.tensors[5].name, "renamed");
    int32_t tokens[2] = {1, 2};
    float logits[2 * TINY_VOCAB];
    logits_capture capture = {logits, 2, TINY_VOCAB};
    qref_weight_provider provider = {&model, tiny_load, NULL};
    qref_error err = {0};
    assert_int_equal(qref_llama_forward(&model.config, &provider, tokens, 1, 2, NULL, capture_logits, &capture, &err),
                     QREF_ERR_INVALID);
    assert_non_null(strstr(err.message, "not found"));
    tiny_free(&model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stories260k_matches_llama2c),
        cmocka_unit_test(forward_independent_of_threads_and_batching),
        cmocka_unit_test(half_precision_weights_widened_exactly),
        cmocka_unit_test(tiny_model_matches_float64_formulas),
        cmocka_unit_test(rope_llama3_scaling),
        cmocka_unit_test(token_outside_vocabulary_rejected),
        cmocka_unit_test(missing_tensor_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
