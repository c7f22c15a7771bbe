/*
 * GGUF LLaMA models (model/qref_gguf_model.h), ggml's activation rounding
 * (formats/qref_ggml_vec_dot.h) and GGUF "gpt2" tokenizers.
 *
 * Where the expected values come from:
 *   - the F32 GGUF fixtures hold exactly the weights of the Hugging Face snapshots, because
 *     both were converted from the same llama2.c files (test_formats_ggml checks every
 *     weight). So the two must give the same logits (1e-5, here bit-equal);
 *   - the configs of the GGUF fixtures must equal the snapshots' config.json, except the
 *     context length, which the converter wrote as 128;
 *   - rope_freqs factors are computed in the test with convert_hf_to_gguf.py's formula and
 *     compared with the inverse frequencies transformers' "llama3" scaling gives (the forward's);
 *   - the activation roundings are worked by hand from ggml's reference quantizers.
 */
#include "test_support.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "formats/qref_ggml_vec_dot.h"
#include "io/qref_gguf.h"
#include "io/qref_snapshot.h"
#include "model/qref_config.h"
#include "model/qref_gguf_model.h"
#include "model/qref_llama.h"
#include "model/qref_tensor_weights.h"
#include "model/qref_tokenizer.h"
#include "test_gguf_writer.h"

/* ---- helpers ----------------------------------------------------------------------------- */

typedef struct logits_capture {
    float *values; /* [positions][vocab] */
    int vocab;
} logits_capture;

static qref_status capture_logits(void *ctx, size_t window, int position, int count, const float *logits,
                                  qref_error *err)
{
    (void)err;
    (void)window;
    logits_capture *capture = ctx;
    memcpy(capture->values + (size_t)position * (size_t)capture->vocab, logits,
           (size_t)count * (size_t)capture->vocab * sizeof(float));
    return QREF_OK;
}

static float *run_forward(const qref_llama_config *config, const qref_weight_provider *weights, const int32_t *ids,
                          int count)
{
    logits_capture capture = {malloc((size_t)count * (size_t)config->vocab_size * sizeof(float)),
                              config->vocab_size};
    assert_non_null(capture.values);
    qref_error err = {0};
    qref_status status = qref_llama_forward(config, weights, ids, 1, count, NULL, capture_logits, &capture, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    return capture.values;
}

static void open_gguf_fixture(const char *relative, qref_gguf *g, qref_gguf_model *model)
{
    qref_error err = {0};
    assert_int_equal(qref_gguf_open(test_fixture_path(relative), g, &err), QREF_OK);
    qref_status status = qref_gguf_model_init(g, model, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
}

/* ---- GGUF fixtures against their Hugging Face snapshots ------------------------------------ */

static void check_gguf_equals_snapshot(const char *gguf_path, const char *snapshot_path)
{
    qref_error err = {0};
    qref_snapshot *snapshot = NULL;
    assert_int_equal(qref_snapshot_open(test_fixture_path(snapshot_path), &snapshot, &err), QREF_OK);
    const qref_blob *json = qref_snapshot_find_file(snapshot, "config.json");
    assert_non_null(json);
    qref_llama_config hf;
    assert_int_equal(qref_llama_config_parse("config.json", (const char *)json->data, json->size, &hf, &err),
                     QREF_OK);
    qref_tensor_weights tensor_weights = {.tensors = qref_snapshot_tensors(snapshot)};
    qref_weight_provider hf_weights;
    qref_tensor_weights_provider(&tensor_weights, &hf_weights);

    qref_gguf g;
    qref_gguf_model model;
    open_gguf_fixture(gguf_path, &g, &model);
    qref_weight_provider gguf_weights;
    qref_gguf_model_provider(&model, &gguf_weights);
    const qref_llama_config *c = &model.config;
    assert_int_equal(c->vocab_size, hf.vocab_size);
    assert_int_equal(c->hidden_size, hf.hidden_size);
    assert_int_equal(c->intermediate_size, hf.intermediate_size);
    assert_int_equal(c->num_hidden_layers, hf.num_hidden_layers);
    assert_int_equal(c->num_attention_heads, hf.num_attention_heads);
    assert_int_equal(c->num_key_value_heads, hf.num_key_value_heads);
    assert_int_equal(c->head_dim, hf.head_dim);
    assert_true(fabs(c->rms_norm_eps - hf.rms_norm_eps) <= 1e-12);
    assert_true(c->rope_theta == hf.rope_theta);
    assert_int_equal(c->rope_scaling.type, QREF_ROPE_DEFAULT);
    assert_int_equal(c->bos_token_id, 1);
    assert_int_equal(c->eos_token_id, 2);

    /* 48 seeded token ids, BOS first */
    int32_t ids[48];
    test_rng rng = {2024};
    ids[0] = 1;
    for (int i = 1; i < 48; i++)
        ids[i] = (int32_t)(test_rng_next(&rng) % (uint64_t)hf.vocab_size);
    float *expected = run_forward(&hf, &hf_weights, ids, 48);
    float *got = run_forward(c, &gguf_weights, ids, 48);
    double worst = 0.0;
    for (size_t i = 0; i < (size_t)48 * (size_t)hf.vocab_size; i++) {
        double d = fabs((double)got[i] - (double)expected[i]);
        if (d > worst)
            worst = d;
    }
    if (worst > 1e-5)
        print_error("%s: max |logit difference| %g against %s\n", gguf_path, worst, snapshot_path);
    assert_true(worst <= 1e-5);
    free(expected);
    free(got);
    qref_gguf_free(&g);
    qref_snapshot_free(snapshot);
}

static void f32_gguf_equals_snapshot(void **state)
{
    (void)state;
    /* synth256: 4 heads, 2 KV heads of 64; stories260k: 8 heads, 4 KV heads of 8, untied output */
    check_gguf_equals_snapshot("models/synth256-gguf/synth256-f32.gguf", "models/synth256");
    check_gguf_equals_snapshot("models/stories260k-gguf/stories260k-f32.gguf", "models/stories260k");
}

static void config_of_fixtures(void **state)
{
    (void)state;
    qref_gguf g;
    qref_gguf_model model;
    open_gguf_fixture("models/stories260k-gguf/stories260k-Q4_K_M.gguf", &g, &model);
    const qref_llama_config *c = &model.config;
    assert_int_equal(c->num_hidden_layers, 5);
    assert_int_equal(c->hidden_size, 64);
    assert_int_equal(c->intermediate_size, 172);
    assert_int_equal(c->num_attention_heads, 8);
    assert_int_equal(c->num_key_value_heads, 4);
    assert_int_equal(c->head_dim, 8);
    assert_int_equal(c->max_position_embeddings, 128); /* llama.context_length as the converter wrote it */
    assert_int_equal(c->vocab_size, 512);
    assert_false(c->tie_word_embeddings);
    assert_true(c->rms_norm_eps == (double)1e-5f);
    assert_true(c->rope_theta == 10000.0); /* no llama.rope.freq_base: llama.cpp's default */
    assert_string_equal(qref_gguf_file_type_name(15), "Q4_K_M");
    assert_int_equal(qref_gguf_llama_tensor_count(c), 3 + 5 * 9);
    qref_gguf_free(&g);

    /* a third-party file: ollama's llama-2-tiny-random */
    open_gguf_fixture("models/llama-2-tiny-random/llama-2-tiny-random.gguf", &g, &model);
    c = &model.config;
    assert_int_equal(c->num_hidden_layers, 1);
    assert_int_equal(c->hidden_size, 8);
    assert_int_equal(c->num_attention_heads, 2);
    assert_int_equal(c->num_key_value_heads, 2);
    assert_int_equal(c->head_dim, 4);
    assert_int_equal(c->vocab_size, 32000);
    assert_int_equal(c->max_position_embeddings, 4096);
    qref_weight_provider weights;
    qref_gguf_model_provider(&model, &weights);
    const int32_t ids[4] = {1, 15043, 3186, 29991};
    float *logits = run_forward(c, &weights, ids, 4);
    for (size_t i = 0; i < (size_t)4 * 32000; i++)
        assert_true(isfinite(logits[i]));
    free(logits);
    qref_gguf_free(&g);
}

/* ---- synthetic models ---------------------------------------------------------------------- */

/* A tiny LLaMA: hidden 32, 2 heads and 1 KV head of 16, FFN 64, one layer, 16 tokens, tied output. */
enum { TINY_HIDDEN = 32, TINY_HEADS = 2, TINY_KV_HEADS = 1, TINY_HEAD_DIM = 16, TINY_FFN = 64, TINY_VOCAB = 16 };

typedef struct tiny_options {
    const char *architecture;      /* NULL: "llama" */
    const char *omit_key;          /* a key left out */
    const char *rope_scaling_type; /* written when not NULL */
    uint32_t rope_dims;            /* 0: head_dim */
    uint32_t head_count_kv;        /* 0: TINY_KV_HEADS */
    const char *omit_tensor;       /* a tensor left out */
    const char *wide_tensor;       /* a tensor written with one more row than the config implies */
    const char *mxfp4_tensor;      /* a tensor written as MXFP4 (no dequantizer) */
    const float *rope_freqs;       /* rope_freqs.weight [TINY_HEAD_DIM / 2] when not NULL */
    float rope_theta;              /* 0: no llama.rope.freq_base */
    uint32_t split_count;          /* split.count when not 0 */
} tiny_options;

/* Element (r, c) of tensor `name`: a value that names its row, so row order can be checked. */
static float tiny_value(const char *name, int64_t r, int64_t c)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return (float)r + 0.001f * (float)c + 0.0001f * (float)(h % 7);
}

static void tiny_tensor(test_gguf_writer *w, const tiny_options *o, const char *name, int64_t ne0, int64_t ne1)
{
    if (o->omit_tensor != NULL && strcmp(o->omit_tensor, name) == 0)
        return;
    if (o->wide_tensor != NULL && strcmp(o->wide_tensor, name) == 0)
        ne1 += 1;
    int64_t ne[2] = {ne0, ne1};
    int n_dims = ne1 == 1 ? 1 : 2;
    if (o->mxfp4_tensor != NULL && strcmp(o->mxfp4_tensor, name) == 0) {
        size_t bytes = (size_t)(ne0 / 32 * 17 * ne1);
        uint8_t *zeros = calloc(bytes, 1);
        test_gguf_tensor(w, name, n_dims, ne, QREF_GGML_TYPE_MXFP4, zeros, bytes);
        free(zeros);
        return;
    }
    float *values = malloc((size_t)(ne0 * ne1) * sizeof *values);
    for (int64_t r = 0; r < ne1; r++)
        for (int64_t c = 0; c < ne0; c++)
            values[r * ne0 + c] = n_dims == 1 ? 1.0f : 0.01f * tiny_value(name, r, c);
    test_gguf_tensor(w, name, n_dims, ne, QREF_GGML_TYPE_F32, values, (size_t)(ne0 * ne1) * sizeof *values);
    free(values);
}

static void tiny_kv_u32(test_gguf_writer *w, const tiny_options *o, const char *key, uint32_t value)
{
    if (o->omit_key == NULL || strcmp(o->omit_key, key) != 0)
        test_gguf_kv_u32(w, key, value);
}

/* Writes the tiny model and parses it; the returned buffer must outlive g. */
static uint8_t *tiny_model(const tiny_options *o, qref_gguf *g)
{
    test_gguf_writer w = {0};
    test_gguf_kv_string(&w, "general.architecture", o->architecture != NULL ? o->architecture : "llama");
    tiny_kv_u32(&w, o, "llama.block_count", 1);
    tiny_kv_u32(&w, o, "llama.context_length", 64);
    tiny_kv_u32(&w, o, "llama.embedding_length", TINY_HIDDEN);
    tiny_kv_u32(&w, o, "llama.feed_forward_length", TINY_FFN);
    tiny_kv_u32(&w, o, "llama.attention.head_count", TINY_HEADS);
    tiny_kv_u32(&w, o, "llama.attention.head_count_kv", o->head_count_kv ? o->head_count_kv : TINY_KV_HEADS);
    tiny_kv_u32(&w, o, "llama.rope.dimension_count", o->rope_dims ? o->rope_dims : TINY_HEAD_DIM);
    if (o->omit_key == NULL || strcmp(o->omit_key, "llama.attention.layer_norm_rms_epsilon") != 0)
        test_gguf_kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (o->rope_theta > 0)
        test_gguf_kv_f32(&w, "llama.rope.freq_base", o->rope_theta);
    if (o->rope_scaling_type != NULL)
        test_gguf_kv_string(&w, "llama.rope.scaling.type", o->rope_scaling_type);
    if (o->split_count != 0)
        test_gguf_kv_u32(&w, "split.count", o->split_count);

    tiny_tensor(&w, o, "token_embd.weight", TINY_HIDDEN, TINY_VOCAB);
    tiny_tensor(&w, o, "output_norm.weight", TINY_HIDDEN, 1);
    if (o->rope_freqs != NULL) {
        int64_t ne[1] = {TINY_HEAD_DIM / 2};
        test_gguf_tensor(&w, "rope_freqs.weight", 1, ne, QREF_GGML_TYPE_F32, o->rope_freqs,
                         TINY_HEAD_DIM / 2 * sizeof(float));
    }
    tiny_tensor(&w, o, "blk.0.attn_norm.weight", TINY_HIDDEN, 1);
    tiny_tensor(&w, o, "blk.0.attn_q.weight", TINY_HIDDEN, TINY_HEADS * TINY_HEAD_DIM);
    tiny_tensor(&w, o, "blk.0.attn_k.weight", TINY_HIDDEN, TINY_KV_HEADS * TINY_HEAD_DIM);
    tiny_tensor(&w, o, "blk.0.attn_v.weight", TINY_HIDDEN, TINY_KV_HEADS * TINY_HEAD_DIM);
    tiny_tensor(&w, o, "blk.0.attn_output.weight", TINY_HEADS * TINY_HEAD_DIM, TINY_HIDDEN);
    tiny_tensor(&w, o, "blk.0.ffn_norm.weight", TINY_HIDDEN, 1);
    tiny_tensor(&w, o, "blk.0.ffn_gate.weight", TINY_HIDDEN, TINY_FFN);
    tiny_tensor(&w, o, "blk.0.ffn_up.weight", TINY_HIDDEN, TINY_FFN);
    tiny_tensor(&w, o, "blk.0.ffn_down.weight", TINY_FFN, TINY_HIDDEN);

    size_t size = 0;
    uint8_t *bytes = test_gguf_finish(&w, &size);
    qref_error err = {0};
    qref_status status = qref_gguf_parse("tiny.gguf", bytes, size, g, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    return bytes;
}

static void expect_config_error(const tiny_options *o, qref_status expected, const char *phrase)
{
    qref_gguf g;
    uint8_t *bytes = tiny_model(o, &g);
    qref_llama_config config;
    qref_error err = {0};
    test_assert_error(qref_gguf_llama_config(&g, &config, &err), &err, expected, phrase);
    qref_gguf_free(&g);
    free(bytes);
}

static void config_rejects_metadata(void **state)
{
    (void)state;
    expect_config_error(&(tiny_options){.architecture = "gptneox"}, QREF_ERR_UNSUPPORTED,
                        "tiny.gguf: general.architecture \"gptneox\" is not supported (expected \"llama\")");
    expect_config_error(&(tiny_options){.omit_key = "llama.feed_forward_length"}, QREF_ERR_INVALID,
                        "llama.feed_forward_length");
    expect_config_error(&(tiny_options){.omit_key = "llama.attention.layer_norm_rms_epsilon"}, QREF_ERR_INVALID,
                        "llama.attention.layer_norm_rms_epsilon");
    expect_config_error(&(tiny_options){.rope_scaling_type = "linear"}, QREF_ERR_UNSUPPORTED,
                        "tiny.gguf: llama.rope.scaling.type \"linear\" is not supported");
    expect_config_error(&(tiny_options){.rope_dims = 8}, QREF_ERR_UNSUPPORTED,
                        "tiny.gguf: llama.rope.dimension_count is 8, expected the head dimension 16 (partial rotary "
                        "embeddings are not supported)");
    expect_config_error(&(tiny_options){.head_count_kv = 3}, QREF_ERR_INVALID,
                        "tiny.gguf: llama.attention.head_count 2 is not a multiple of llama.attention.head_count_kv 3");
    expect_config_error(&(tiny_options){.omit_tensor = "token_embd.weight"}, QREF_ERR_INVALID, "token_embd.weight");
    expect_config_error(&(tiny_options){.split_count = 2}, QREF_ERR_UNSUPPORTED,
                        "tiny.gguf: split.count is 2; models split over several GGUF files are not supported");

    /* absent output.weight: tied; no freq_base: 10000; "none" scaling is accepted */
    qref_gguf g;
    uint8_t *bytes = tiny_model(&(tiny_options){.rope_scaling_type = "none"}, &g);
    qref_llama_config config;
    qref_error err = {0};
    assert_int_equal(qref_gguf_llama_config(&g, &config, &err), QREF_OK);
    assert_true(config.tie_word_embeddings);
    assert_true(config.rope_theta == 10000.0);
    assert_int_equal(qref_gguf_llama_tensor_count(&config), 2 + 9);
    qref_gguf_free(&g);
    free(bytes);
}

static void tensors_checked_by_name(void **state)
{
    (void)state;
    struct {
        tiny_options options;
        const char *tensor;
        qref_status status;
        const char *phrase;
    } cases[] = {
        {{.omit_tensor = "blk.0.ffn_down.weight"}, "blk.0.ffn_down.weight", QREF_ERR_INVALID,
         "tiny.gguf: tensor \"blk.0.ffn_down.weight\" not found (expected ne [64, 32], read as "
         "model.layers.0.mlp.down_proj.weight)"},
        {{.wide_tensor = "blk.0.attn_k.weight"}, "blk.0.attn_k.weight", QREF_ERR_INVALID,
         "tiny.gguf: tensor \"blk.0.attn_k.weight\": ne [32, 17], expected [32, 16] (in_features, out_features of "
         "model.layers.0.self_attn.k_proj.weight as the config implies)"},
        {{.mxfp4_tensor = "blk.0.ffn_up.weight"}, "blk.0.ffn_up.weight", QREF_ERR_UNSUPPORTED,
         "tiny.gguf: tensor \"blk.0.ffn_up.weight\": ggml type MXFP4 (39) has no dequantizer here"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qref_gguf g;
        uint8_t *bytes = tiny_model(&cases[i].options, &g);
        qref_gguf_model model;
        qref_error err = {0};
        assert_int_equal(qref_gguf_model_init(&g, &model, &err), QREF_OK);
        bool found = false;
        for (size_t k = 0; k < qref_gguf_llama_tensor_count(&model.config); k++) {
            qref_gguf_llama_tensor expected;
            qref_gguf_llama_tensor_at(&model.config, k, &expected);
            qref_status status = qref_gguf_model_check_tensor(&model, &expected, &err);
            if (strcmp(expected.name, cases[i].tensor) == 0) {
                test_assert_error(status, &err, cases[i].status, cases[i].phrase);
                found = true;
            } else {
                assert_int_equal(status, QREF_OK);
            }
        }
        assert_true(found);

        /* the forward stops at the same tensor, with the same message */
        qref_weight_provider weights;
        qref_gguf_model_provider(&model, &weights);
        const int32_t ids[3] = {1, 2, 3};
        test_assert_error(qref_llama_forward(&model.config, &weights, ids, 1, 3, NULL, capture_logits,
                                             &(logits_capture){NULL, TINY_VOCAB}, &err),
                          &err, cases[i].status, cases[i].phrase);
        qref_gguf_free(&g);
        free(bytes);
    }
}

static void qk_rows_put_back(void **state)
{
    (void)state;
    qref_gguf g;
    uint8_t *bytes = tiny_model(&(tiny_options){0}, &g);
    qref_gguf_model model;
    qref_error err = {0};
    assert_int_equal(qref_gguf_model_init(&g, &model, &err), QREF_OK);
    qref_weight_provider weights;
    qref_gguf_model_provider(&model, &weights);

    /* attn_q: 2 heads of 16 rows. GGUF row 2i + s of a head is Hugging Face row s * 8 + i. */
    float q[TINY_HEADS * TINY_HEAD_DIM * TINY_HIDDEN];
    assert_int_equal(weights.load(weights.ctx, "model.layers.0.self_attn.q_proj.weight", TINY_HEADS * TINY_HEAD_DIM,
                                  TINY_HIDDEN, q, &err),
                     QREF_OK);
    for (int head = 0; head < TINY_HEADS; head++)
        for (int i = 0; i < TINY_HEAD_DIM / 2; i++)
            for (int s = 0; s < 2; s++) {
                int hf_row = head * TINY_HEAD_DIM + s * TINY_HEAD_DIM / 2 + i;
                int gguf_row = head * TINY_HEAD_DIM + 2 * i + s;
                assert_true(q[hf_row * TINY_HIDDEN + 3] == 0.01f * tiny_value("blk.0.attn_q.weight", gguf_row, 3));
            }
    /* attn_v is served in stored order */
    float v[TINY_HEAD_DIM * TINY_HIDDEN];
    assert_int_equal(weights.load(weights.ctx, "model.layers.0.self_attn.v_proj.weight", TINY_HEAD_DIM, TINY_HIDDEN,
                                  v, &err),
                     QREF_OK);
    for (int r = 0; r < TINY_HEAD_DIM; r++)
        assert_true(v[r * TINY_HIDDEN + 5] == 0.01f * tiny_value("blk.0.attn_v.weight", r, 5));
    test_assert_error(weights.load(weights.ctx, "lm_head.weight", TINY_VOCAB, TINY_HIDDEN, v, &err), &err,
                      QREF_ERR_INVALID, "tiny.gguf: no GGUF tensor corresponds to \"lm_head.weight\"");
    qref_gguf_free(&g);
    free(bytes);
}

/* convert_hf_to_gguf.py LlamaModel.generate_extra_tensors, in float64, stored as f32. */
static void converter_rope_factors(double theta, double factor, float *out)
{
    const double low = 1.0, high = 4.0, original = 8192.0, pi = 3.14159265358979323846;
    for (int k = 0; k < TINY_HEAD_DIM / 2; k++) {
        double freq = 1.0 / pow(theta, 2.0 * k / TINY_HEAD_DIM);
        double wavelen = 2.0 * pi / freq;
        double value;
        if (wavelen < original / high)
            value = 1.0;
        else if (wavelen > original / low)
            value = factor;
        else {
            double smooth = (original / wavelen - low) / (high - low);
            value = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        out[k] = (float)value;
    }
}

static void rope_freqs_map_to_llama3(void **state)
{
    (void)state;
    /* theta 500000 puts the 8 frequencies of head_dim 16 in all three ranges */
    float factors[TINY_HEAD_DIM / 2];
    converter_rope_factors(500000.0, 8.0, factors);
    assert_true(factors[0] == 1.0f);
    assert_true(factors[TINY_HEAD_DIM / 2 - 1] == 8.0f);
    bool interpolated = false;
    for (int k = 0; k < TINY_HEAD_DIM / 2; k++)
        interpolated |= factors[k] > 1.0f && factors[k] < 8.0f;
    assert_true(interpolated);

    qref_gguf g;
    uint8_t *bytes = tiny_model(&(tiny_options){.rope_freqs = factors, .rope_theta = 500000.0f}, &g);
    qref_llama_config config;
    qref_error err = {0};
    assert_int_equal(qref_gguf_llama_config(&g, &config, &err), QREF_OK);
    assert_int_equal(config.rope_scaling.type, QREF_ROPE_LLAMA3);
    assert_true(config.rope_scaling.factor == 8.0);
    assert_int_equal(config.rope_scaling.original_max_position_embeddings, 8192);

    /* llama.cpp divides each base frequency by its factor; the forward's llama3 scaling gives the same */
    float inv_freq[TINY_HEAD_DIM / 2];
    qref_llama_rope_inv_freq(&config, inv_freq);
    for (int k = 0; k < TINY_HEAD_DIM / 2; k++) {
        double llamacpp = 1.0 / pow(500000.0, 2.0 * k / TINY_HEAD_DIM) / factors[k];
        assert_true(fabs(inv_freq[k] - llamacpp) <= 1e-6 * llamacpp);
    }
    qref_gguf_free(&g);
    free(bytes);

    /* one factor off: not the published scaling */
    factors[3] *= 1.01f;
    expect_config_error(&(tiny_options){.rope_freqs = factors, .rope_theta = 500000.0f}, QREF_ERR_UNSUPPORTED,
                        "tiny.gguf: tensor \"rope_freqs.weight\": element 3 is");
}

/* ---- activation rounding ------------------------------------------------------------------- */

static void vec_dot_types(void **state)
{
    (void)state;
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_F32), QREF_GGML_TYPE_F32);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_F16), QREF_GGML_TYPE_F16);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_BF16), QREF_GGML_TYPE_BF16);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_Q4_0), QREF_GGML_TYPE_Q8_0);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_Q4_1), QREF_GGML_TYPE_Q8_1);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_Q5_0), QREF_GGML_TYPE_Q8_0);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_Q5_1), QREF_GGML_TYPE_Q8_1);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_Q8_0), QREF_GGML_TYPE_Q8_0);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_IQ4_NL), QREF_GGML_TYPE_Q8_0);
    for (uint32_t t = QREF_GGML_TYPE_Q2_K; t <= QREF_GGML_TYPE_Q6_K; t++)
        assert_int_equal(qref_ggml_vec_dot_type(t), QREF_GGML_TYPE_Q8_K);
    assert_int_equal(qref_ggml_vec_dot_type(QREF_GGML_TYPE_IQ2_XXS), QREF_GGML_TYPE_COUNT);
}

static void activations_rounded_as_ggml(void **state)
{
    (void)state;
    qref_error err = {0};

    /* Q8_0: x = j - 16 for j < 32 with x[0] = -15.7, so max|x| = 15.7 and d = 15.7 / 127 (stored as f16) */
    float x[256];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    x[0] = -15.7f;
    assert_int_equal(qref_ggml_round_activations(QREF_GGML_TYPE_Q8_0, x, 32, &err), QREF_OK);
    float d = qref_f16_to_f32(qref_f32_to_f16(15.7f / 127.0f));
    assert_true(x[16] == 0.0f);
    assert_true(x[0] == d * -127.0f);
    assert_true(x[31] == d * 121.0f); /* 15 * 127 / 15.7 = 121.3 */
    assert_true(x[1] == d * -121.0f);
    assert_true(x[17] == d * 8.0f);   /* 1 * 127 / 15.7 = 8.09 */

    /* Q8_K: the largest magnitude -127/64 sets s = -127 / max = 64 exactly, so s * x below is exact */
    for (int j = 0; j < 256; j++)
        x[j] = 0.0f;
    x[0] = -127.0f / 64.0f;
    x[1] = 2.5f / 64.0f;  /* s * x = 2.5: ties to even give 2 (roundf would give 3) */
    x[2] = 3.5f / 64.0f;  /* 3.5 -> 4 */
    x[3] = -0.5f / 64.0f; /* -0.5 -> -0 */
    x[4] = 10.3f / 64.0f; /* 10.3 -> 10 */
    assert_int_equal(qref_ggml_round_activations(QREF_GGML_TYPE_Q8_K, x, 256, &err), QREF_OK);
    assert_true(x[0] == -127.0f / 64.0f);
    assert_true(x[1] == 2.0f / 64.0f);
    assert_true(x[2] == 4.0f / 64.0f);
    assert_true(x[3] == 0.0f);
    assert_true(x[4] == 10.0f / 64.0f);
    assert_true(x[5] == 0.0f);

    /* F16 and BF16: round to nearest even; 1 + 2^-11 is a tie in f16, 1 + 2^-8 in bf16 */
    float h[2] = {1.0f + 0x1p-11f, 1.0f + 0x1p-8f};
    assert_int_equal(qref_ggml_round_activations(QREF_GGML_TYPE_F16, h, 2, &err), QREF_OK);
    assert_true(h[0] == 1.0f);
    assert_true(h[1] == 1.0f + 0x1p-8f);
    float b[1] = {1.0f + 0x1p-8f};
    assert_int_equal(qref_ggml_round_activations(QREF_GGML_TYPE_BF16, b, 1, &err), QREF_OK);
    assert_true(b[0] == 1.0f);

    test_assert_error(qref_ggml_round_activations(QREF_GGML_TYPE_Q8_K, x, 32, &err), &err, QREF_ERR_INVALID,
                      "activations: 32 values do not fill blocks of 256 for Q8_K");
    test_assert_error(qref_ggml_round_activations(QREF_GGML_TYPE_Q4_K, x, 256, &err), &err, QREF_ERR_INVALID,
                      "activations: Q4_K is not a vec_dot_type");
}

/* ---- GGUF "gpt2" tokenizers ---------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode: the byte-level alphabet character of byte b, as UTF-8. */
static void byte_level_char(int b, char out[3])
{
    int cp = b;
    if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
        int n = 0;
        for (int k = 0; k < b; k++)
            if (!((k >= '!' && k <= '~') || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF)))
                n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

typedef struct gpt2_options {
    const char *model; /* NULL: "gpt2" */
    const char *pre;   /* NULL: no tokenizer.ggml.pre */
} gpt2_options;

/* A gpt2 vocabulary: 256 byte tokens, "ab" (256), "<|begin_of_text|>" (257, CONTROL); merge "a b". */
static uint8_t *gpt2_vocab(const gpt2_options *o, qref_gguf *g)
{
    char storage[256][3];
    const char *tokens[258];
    int32_t types[258];
    for (int b = 0; b < 256; b++) {
        byte_level_char(b, storage[b]);
        tokens[b] = storage[b];
        types[b] = 1;
    }
    tokens[256] = "ab";
    types[256] = 1;
    tokens[257] = "<|begin_of_text|>";
    types[257] = 3;
    const char *merges[1] = {"a b"};
    test_gguf_writer w = {0};
    test_gguf_kv_string(&w, "tokenizer.ggml.model", o->model != NULL ? o->model : "gpt2");
    if (o->pre != NULL)
        test_gguf_kv_string(&w, "tokenizer.ggml.pre", o->pre);
    test_gguf_kv_strings(&w, "tokenizer.ggml.tokens", tokens, 258);
    test_gguf_kv_i32s(&w, "tokenizer.ggml.token_type", types, 258);
    test_gguf_kv_strings(&w, "tokenizer.ggml.merges", merges, 1);
    test_gguf_kv_u32(&w, "tokenizer.ggml.bos_token_id", 257);
    test_gguf_kv_u32(&w, "tokenizer.ggml.eos_token_id", 257);
    size_t size = 0;
    uint8_t *bytes = test_gguf_finish(&w, &size);
    qref_error err = {0};
    assert_int_equal(qref_gguf_parse("vocab.gguf", bytes, size, g, &err), QREF_OK);
    return bytes;
}

static void gpt2_tokenizer_from_metadata(void **state)
{
    (void)state;
    qref_gguf g;
    uint8_t *bytes = gpt2_vocab(&(gpt2_options){.pre = "llama-bpe"}, &g);
    qref_tokenizer *tokenizer = NULL;
    qref_error err = {0};
    assert_int_equal(qref_tokenizer_load_gguf(&g, "vocab.gguf", &tokenizer, &err), QREF_OK);
    assert_int_equal(qref_tokenizer_kind_of(tokenizer), QREF_TOKENIZER_GGUF_BPE);
    assert_int_equal(qref_tokenizer_bos_id(tokenizer), 257);
    assert_true(qref_tokenizer_adds_bos(tokenizer));

    int32_t *ids = NULL;
    size_t count = 0;
    assert_int_equal(qref_tokenizer_encode(tokenizer, "ab", 2, true, &ids, &count, &err), QREF_OK);
    assert_int_equal(count, 2);
    assert_int_equal(ids[0], 257);
    assert_int_equal(ids[1], 256);
    free(ids);

    /* a CONTROL token's text is ordinary text, as llama.cpp encodes with parse_special = false */
    const char *text = "<|begin_of_text|>";
    assert_int_equal(qref_tokenizer_encode(tokenizer, text, strlen(text), false, &ids, &count, &err), QREF_OK);
    assert_true(count > 2);
    assert_int_equal(ids[0], '<');
    assert_int_equal(ids[1], '|');
    for (size_t i = 0; i < count; i++)
        assert_int_not_equal(ids[i], 257);
    free(ids);
    qref_tokenizer_free(tokenizer);
    qref_gguf_free(&g);
    free(bytes);

    struct {
        gpt2_options options;
        const char *phrase;
    } rejected[] = {
        {{.pre = NULL}, "vocab.gguf: tokenizer.ggml.pre is missing for a gpt2 tokenizer, so llama.cpp uses its "
                        "\"default\" pre-tokenizer"},
        {{.pre = "default"}, "vocab.gguf: tokenizer.ggml.pre \"default\" is not supported"},
        {{.pre = "qwen2"}, "vocab.gguf: tokenizer.ggml.pre \"qwen2\" is not supported"},
        {{.model = "bert", .pre = "llama-bpe"}, "vocab.gguf: tokenizer.ggml.model \"bert\" is not supported "
                                                "(supported: \"llama\", \"gpt2\")"},
    };
    for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++) {
        bytes = gpt2_vocab(&rejected[i].options, &g);
        test_assert_error(qref_tokenizer_load_gguf(&g, "vocab.gguf", &tokenizer, &err), &err, QREF_ERR_UNSUPPORTED,
                          rejected[i].phrase);
        assert_null(tokenizer);
        qref_gguf_free(&g);
        free(bytes);
    }
}

static void gguf_without_tokenizer(void **state)
{
    (void)state;
    qref_gguf g;
    uint8_t *bytes = tiny_model(&(tiny_options){0}, &g);
    qref_tokenizer *tokenizer = (qref_tokenizer *)(uintptr_t)1; /* must be overwritten with NULL */
    qref_error err = {0};
    assert_int_equal(qref_tokenizer_load_gguf(&g, "tiny.gguf", &tokenizer, &err), QREF_OK);
    assert_null(tokenizer);
    qref_gguf_free(&g);
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f32_gguf_equals_snapshot),
        cmocka_unit_test(config_of_fixtures),
        cmocka_unit_test(config_rejects_metadata),
        cmocka_unit_test(tensors_checked_by_name),
        cmocka_unit_test(qk_rows_put_back),
        cmocka_unit_test(rope_freqs_map_to_llama3),
        cmocka_unit_test(vec_dot_types),
        cmocka_unit_test(activations_rounded_as_ggml),
        cmocka_unit_test(gpt2_tokenizer_from_metadata),
        cmocka_unit_test(gguf_without_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
