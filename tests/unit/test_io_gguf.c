/*
 * GGUF reader.
 *
 * Expected values come from sources other than the reader:
 *   - the models' config.json files: hyper-parameters and shapes;
 *   - the SentencePiece tokenizer.model files the vocabularies were converted from: token
 *     strings, scores and types, read with qref_spm;
 *   - the block sizes of ggml-common.h: byte sizes and offsets;
 *   - llama.cpp's quantization rules (llama-quant.cpp): which tensors get which type.
 * A malformed corpus built here from a fixed seed has one file per failure kind of the GGUF
 * CVEs and reader bugs (the checks listed in io/qref_gguf.h); each case asserts the status and
 * the phrase that names the field, the value and the limit.
 */
#include "test_support.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/qref_dtype.h"
#include "io/qref_gguf.h"
#include "model/qref_config.h"
#include "model/qref_spm.h"

static void open_fixture(const char *relative, qref_gguf *g)
{
    qref_error err = {0};
    qref_status status = qref_gguf_open(test_fixture_path(relative), g, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
}

static void load_config(const char *relative, qref_llama_config *config)
{
    size_t size;
    char *text = test_read_file(test_fixture_path(relative), &size);
    qref_error err = {0};
    assert_int_equal(qref_llama_config_parse(relative, text, size, config, &err), QREF_OK);
    free(text);
}

static uint32_t get_u32(const qref_gguf *g, const char *key)
{
    uint32_t value = 0;
    qref_error err = {0};
    qref_status status = qref_gguf_get_u32(g, key, &value, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    return value;
}

static void assert_string_value(const qref_gguf *g, const char *key, const char *expected)
{
    qref_gguf_string s;
    qref_error err = {0};
    qref_status status = qref_gguf_get_string(g, key, &s, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    assert_int_equal(s.length, strlen(expected));
    assert_memory_equal(s.data, expected, s.length);
}

static void assert_tensor(const qref_gguf *g, const char *name, uint32_t type, int n_dims, int64_t ne0, int64_t ne1)
{
    const qref_gguf_tensor *t = qref_gguf_find_tensor(g, name);
    if (t == NULL)
        print_error("missing tensor %s\n", name);
    assert_non_null(t);
    if (t->type != type)
        print_error("%s: type %s, expected %s\n", name, qref_ggml_type_name(t->type), qref_ggml_type_name(type));
    assert_int_equal(t->type, type);
    assert_int_equal(t->n_dims, n_dims);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->ne[3], 1);
    assert_int_equal(t->numel, (uint64_t)(ne0 * ne1));
}

/* ---- Fixtures ---------------------------------------------------------------------------- */

/* Hyper-parameters against config.json; keys as convert-llama2c-to-ggml writes them (UINT32). */
static void assert_llama_metadata(const qref_gguf *g, const qref_llama_config *c)
{
    assert_string_value(g, "general.architecture", "llama");
    assert_string_value(g, "tokenizer.ggml.model", "llama");
    assert_int_equal(get_u32(g, "llama.block_count"), c->num_hidden_layers);
    assert_int_equal(get_u32(g, "llama.embedding_length"), c->hidden_size);
    assert_int_equal(get_u32(g, "llama.feed_forward_length"), c->intermediate_size);
    assert_int_equal(get_u32(g, "llama.attention.head_count"), c->num_attention_heads);
    assert_int_equal(get_u32(g, "llama.attention.head_count_kv"), c->num_key_value_heads);
    assert_int_equal(get_u32(g, "llama.rope.dimension_count"), c->head_dim);
    float eps = 0;
    qref_error err = {0};
    assert_int_equal(qref_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, &err), QREF_OK);
    assert_true(eps == (float)c->rms_norm_eps);
    assert_int_equal(get_u32(g, "tokenizer.ggml.bos_token_id"), c->bos_token_id);
    assert_int_equal(get_u32(g, "tokenizer.ggml.eos_token_id"), c->eos_token_id);
}

static void fixture_synth256_q4_k_m(void **state)
{
    (void)state;
    qref_llama_config c;
    load_config("models/synth256/config.json", &c);
    qref_gguf g;
    open_fixture("models/synth256-gguf/synth256-Q4_K_M.gguf", &g);

    assert_int_equal(g.version, 3);
    assert_int_equal(g.kv_count, 21);
    assert_int_equal(g.alignment, 32);
    assert_llama_metadata(&g, &c);
    /* general.file_type 15 = MOSTLY_Q4_K_M (docs/gguf.md); quantization version 2 = GGML_QNT_VERSION. */
    assert_int_equal(get_u32(&g, "general.file_type"), 15);
    assert_int_equal(get_u32(&g, "general.quantization_version"), 2);

    /* Tensors: embedding, output, output norm and 9 per layer. ne is the PyTorch shape
     * reversed: q_proj [heads*head_dim, hidden] is ne [hidden, heads*head_dim]. */
    assert_int_equal(g.tensor_count, 3 + 9 * (size_t)c.num_hidden_layers);
    int64_t q_rows = (int64_t)c.num_attention_heads * c.head_dim;
    int64_t kv_rows = (int64_t)c.num_key_value_heads * c.head_dim;
    assert_tensor(&g, "token_embd.weight", QREF_GGML_TYPE_Q4_K, 2, c.hidden_size, c.vocab_size);
    assert_tensor(&g, "output_norm.weight", QREF_GGML_TYPE_F32, 1, c.hidden_size, 1);
    /* llama-quantize's Q4_K_M mix (llama-quant.cpp): output.weight Q6_K, and attn_v/ffn_down
     * Q6_K where use_more_bits(layer, n_layers) holds, which for 2 layers is layer 1 only
     * (layer >= 7 * 2 / 8). */
    assert_tensor(&g, "output.weight", QREF_GGML_TYPE_Q6_K, 2, c.hidden_size, c.vocab_size);
    for (int layer = 0; layer < c.num_hidden_layers; layer++) {
        char name[64];
        uint32_t more_bits = layer == 1 ? QREF_GGML_TYPE_Q6_K : QREF_GGML_TYPE_Q4_K;
#define TENSOR(suffix, type, nd, a, b)                                                                                 \
    snprintf(name, sizeof name, "blk.%d.%s.weight", layer, suffix);                                                    \
    assert_tensor(&g, name, type, nd, a, b)
        TENSOR("attn_norm", QREF_GGML_TYPE_F32, 1, c.hidden_size, 1);
        TENSOR("ffn_norm", QREF_GGML_TYPE_F32, 1, c.hidden_size, 1);
        TENSOR("attn_q", QREF_GGML_TYPE_Q4_K, 2, c.hidden_size, q_rows);
        TENSOR("attn_k", QREF_GGML_TYPE_Q4_K, 2, c.hidden_size, kv_rows);
        TENSOR("attn_v", more_bits, 2, c.hidden_size, kv_rows);
        TENSOR("attn_output", QREF_GGML_TYPE_Q4_K, 2, q_rows, c.hidden_size);
        TENSOR("ffn_gate", QREF_GGML_TYPE_Q4_K, 2, c.hidden_size, c.intermediate_size);
        TENSOR("ffn_up", QREF_GGML_TYPE_Q4_K, 2, c.hidden_size, c.intermediate_size);
        TENSOR("ffn_down", more_bits, 2, c.intermediate_size, c.hidden_size);
#undef TENSOR
    }

    /* Sizes from the block sizes: output.weight is 512 rows of one Q6_K block (210 bytes),
     * output_norm 256 f32 = 1024 bytes, token_embd 512 rows of one Q4_K block (144 bytes).
     * The writer puts them back to back from offset 0 in file order, padded to 32. */
    const qref_gguf_tensor *output = qref_gguf_find_tensor(&g, "output.weight");
    const qref_gguf_tensor *norm = qref_gguf_find_tensor(&g, "output_norm.weight");
    const qref_gguf_tensor *embd = qref_gguf_find_tensor(&g, "token_embd.weight");
    assert_int_equal(output->nbytes, 512 * 210);
    assert_int_equal(norm->nbytes, 1024);
    assert_int_equal(embd->nbytes, 512 * 144);
    assert_int_equal(output->offset, 0);
    assert_int_equal(norm->offset, 107520);
    assert_int_equal(embd->offset, 107520 + 1024);
    assert_true(g.contiguous);
    assert_int_equal(g.data_offset % 32, 0);
    assert_ptr_equal(output->data, g.data + g.data_offset);
    /* The last tensor ends within the padding of the file end. */
    const qref_gguf_tensor *last = &g.tensors[g.tensor_count - 1];
    assert_true(g.data_offset + last->offset + last->nbytes <= g.size);
    assert_true(g.size - (g.data_offset + last->offset + last->nbytes) < 32);
    qref_gguf_free(&g);
}

static void fixture_stories260k_q4_k_m(void **state)
{
    (void)state;
    qref_llama_config c;
    load_config("models/stories260k/config.json", &c);
    qref_gguf g;
    open_fixture("models/stories260k-gguf/stories260k-Q4_K_M.gguf", &g);
    assert_llama_metadata(&g, &c);
    assert_int_equal(g.tensor_count, 3 + 9 * (size_t)c.num_hidden_layers);

    /* Widths of 64 and 172 are not multiples of 256, so llama-quantize falls back from the
     * k-quants (fixtures/README.md): Q5_0 for Q4_K, Q8_0 for Q6_K, and for width 172, not a
     * multiple of 32 either, F16. */
    assert_tensor(&g, "token_embd.weight", QREF_GGML_TYPE_Q5_0, 2, c.hidden_size, c.vocab_size);
    assert_tensor(&g, "output.weight", QREF_GGML_TYPE_Q8_0, 2, c.hidden_size, c.vocab_size);
    assert_tensor(&g, "blk.0.attn_q.weight", QREF_GGML_TYPE_Q5_0, 2, c.hidden_size,
                  (int64_t)c.num_attention_heads * c.head_dim);
    assert_tensor(&g, "blk.0.ffn_down.weight", QREF_GGML_TYPE_F16, 2, c.intermediate_size, c.hidden_size);
    assert_tensor(&g, "blk.4.ffn_norm.weight", QREF_GGML_TYPE_F32, 1, c.hidden_size, 1);
    /* ffn_down: 64 rows of 172 f16 = 344 bytes each. */
    assert_int_equal(qref_gguf_find_tensor(&g, "blk.0.ffn_down.weight")->nbytes, 64 * 344);
    qref_gguf_free(&g);
}

/* The GGUF vocabulary equals the SentencePiece model it was converted from: piece strings,
 * scores and types (llama.cpp's token types use SentencePiece's numbering, 1 = NORMAL ...
 * 6 = BYTE). */
static void assert_vocab_matches(const char *gguf_path, const char *spm_path)
{
    qref_gguf g;
    open_fixture(gguf_path, &g);
    qref_spm *spm = NULL;
    qref_error err = {0};
    assert_int_equal(qref_spm_load_file(test_fixture_path(spm_path), &spm, &err), QREF_OK);

    qref_gguf_array tokens, scores, types;
    assert_int_equal(qref_gguf_get_array(&g, "tokenizer.ggml.tokens", QREF_GGUF_TYPE_STRING, &tokens, &err), QREF_OK);
    assert_int_equal(qref_gguf_get_array(&g, "tokenizer.ggml.scores", QREF_GGUF_TYPE_FLOAT32, &scores, &err), QREF_OK);
    assert_int_equal(qref_gguf_get_array(&g, "tokenizer.ggml.token_type", QREF_GGUF_TYPE_INT32, &types, &err),
                     QREF_OK);
    assert_int_equal(tokens.count, (uint64_t)qref_spm_vocab_size(spm));
    assert_int_equal(scores.count, tokens.count);
    assert_int_equal(types.count, tokens.count);
    for (uint64_t i = 0; i < tokens.count; i++) {
        qref_gguf_string token;
        float score;
        int64_t type;
        assert_int_equal(qref_gguf_array_get_string(&tokens, i, &token, &err), QREF_OK);
        assert_int_equal(qref_gguf_array_get_f32(&scores, i, &score, &err), QREF_OK);
        assert_int_equal(qref_gguf_array_get_i64(&types, i, &type, &err), QREF_OK);
        size_t length;
        const char *piece = qref_spm_piece(spm, (int32_t)i, &length);
        if (token.length != length || memcmp(token.data, piece, length) != 0)
            fail_msg("%s: token %" PRIu64 " is \"%.*s\", the SentencePiece piece is \"%.*s\"", gguf_path, i,
                     (int)token.length, token.data, (int)length, piece);
        assert_true(score == qref_spm_piece_score(spm, (int32_t)i));
        assert_int_equal(type, qref_spm_piece_type_of(spm, (int32_t)i));
    }
    assert_int_equal(get_u32(&g, "tokenizer.ggml.bos_token_id"), qref_spm_bos_id(spm));
    assert_int_equal(get_u32(&g, "tokenizer.ggml.eos_token_id"), qref_spm_eos_id(spm));
    assert_int_equal(get_u32(&g, "tokenizer.ggml.unknown_token_id"), qref_spm_unk_id(spm));
    qref_spm_free(spm);
    qref_gguf_free(&g);
}

static void fixture_vocabularies_match_sentencepiece(void **state)
{
    (void)state;
    assert_vocab_matches("models/synth256-gguf/synth256-Q4_K_M.gguf", "models/synth256/tokenizer.model");
    assert_vocab_matches("models/stories260k-gguf/stories260k-f32.gguf", "models/stories260k/tokenizer.model");
    assert_vocab_matches("tokenizers/llama2/ggml-vocab-llama-spm.gguf", "tokenizers/llama2/tokenizer.model");
    assert_vocab_matches("models/llama-2-tiny-random/llama-2-tiny-random.gguf", "tokenizers/llama2/tokenizer.model");
}

static void fixture_llama2_vocab_only(void **state)
{
    (void)state;
    qref_gguf g;
    open_fixture("tokenizers/llama2/ggml-vocab-llama-spm.gguf", &g);
    assert_int_equal(g.tensor_count, 0);
    assert_int_equal(g.kv_count, 22);
    /* No tensors, so no padding: ggml's writer ends the file after the KVs. */
    assert_int_equal(g.data_offset, g.size);
    /* LLaMA-2-7B hyper-parameters (Meta's params.json: dim 4096, 32 layers, 32 heads). */
    assert_string_value(&g, "general.architecture", "llama");
    assert_string_value(&g, "tokenizer.ggml.pre", "default");
    assert_int_equal(get_u32(&g, "llama.block_count"), 32);
    assert_int_equal(get_u32(&g, "llama.embedding_length"), 4096);
    assert_int_equal(get_u32(&g, "llama.attention.head_count"), 32);
    assert_int_equal(get_u32(&g, "llama.vocab_size"), 32000);
    bool add_bos = false, add_eos = true;
    qref_error err = {0};
    assert_int_equal(qref_gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &add_bos, &err), QREF_OK);
    assert_int_equal(qref_gguf_get_bool(&g, "tokenizer.ggml.add_eos_token", &add_eos, &err), QREF_OK);
    assert_true(add_bos);
    assert_false(add_eos);
    qref_gguf_free(&g);
}

static void fixture_llama2_tiny_random(void **state)
{
    (void)state;
    qref_gguf g;
    open_fixture("models/llama-2-tiny-random/llama-2-tiny-random.gguf", &g);
    assert_int_equal(g.tensor_count, 12);
    assert_int_equal(g.kv_count, 18);
    assert_string_value(&g, "general.name", "LLaMA v2");
    uint32_t n_embd = get_u32(&g, "llama.embedding_length");
    uint32_t n_ff = get_u32(&g, "llama.feed_forward_length");
    assert_int_equal(get_u32(&g, "llama.block_count"), 1);
    /* The embedding has one row per token of the 32000-token vocabulary (fixtures/README.md). */
    assert_tensor(&g, "token_embd.weight", QREF_GGML_TYPE_F16, 2, n_embd, 32000);
    assert_tensor(&g, "output.weight", QREF_GGML_TYPE_F16, 2, n_embd, 32000);
    assert_tensor(&g, "blk.0.ffn_down.weight", QREF_GGML_TYPE_F16, 2, n_ff, n_embd);
    assert_tensor(&g, "blk.0.attn_norm.weight", QREF_GGML_TYPE_F32, 1, n_embd, 1);
    assert_int_equal(qref_gguf_find_tensor(&g, "token_embd.weight")->nbytes, (uint64_t)n_embd * 32000 * 2);
    qref_gguf_free(&g);
}

/* Getters name the key, the type found and the type expected. */
static void getters_check_types(void **state)
{
    (void)state;
    qref_gguf g;
    open_fixture("models/synth256-gguf/synth256-Q4_K_M.gguf", &g);
    qref_error err = {0};
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool flag;
    qref_gguf_string s;
    qref_gguf_array array;

    /* Any integer type that fits is accepted: llama.block_count is a UINT32. */
    assert_int_equal(qref_gguf_get_u64(&g, "llama.block_count", &u64, &err), QREF_OK);
    assert_int_equal(u64, 2);
    assert_int_equal(qref_gguf_get_i64(&g, "llama.block_count", &i64, &err), QREF_OK);
    assert_int_equal(i64, 2);
    assert_int_equal(qref_gguf_get_i32(&g, "llama.block_count", &i32, &err), QREF_OK);
    assert_int_equal(i32, 2);
    /* FLOAT32 widens to double exactly. */
    assert_int_equal(qref_gguf_get_f64(&g, "llama.attention.layer_norm_rms_epsilon", &f64, &err), QREF_OK);
    assert_true(f64 == (double)1e-5f);

    test_assert_error(qref_gguf_get_u32(&g, "llama.missing", &u32, &err), &err, QREF_ERR_INVALID,
                      "metadata key \"llama.missing\" is missing, expected UINT32");
    test_assert_error(qref_gguf_get_u32(&g, "general.architecture", &u32, &err), &err, QREF_ERR_INVALID,
                      "\"general.architecture\" has type STRING, expected UINT32");
    test_assert_error(qref_gguf_get_u32(&g, "tokenizer.ggml.tokens", &u32, &err), &err, QREF_ERR_INVALID,
                      "\"tokenizer.ggml.tokens\" is ARRAY of 512 STRING, expected UINT32");
    /* The unused separator id is stored as UINT32 4294967295, outside INT32. */
    test_assert_error(qref_gguf_get_i32(&g, "tokenizer.ggml.seperator_token_id", &i32, &err), &err,
                      QREF_ERR_INVALID, "(UINT32) is 4294967295, which does not fit in INT32");
    test_assert_error(qref_gguf_get_string(&g, "llama.block_count", &s, &err), &err, QREF_ERR_INVALID,
                      "\"llama.block_count\" has type UINT32, expected STRING");
    test_assert_error(qref_gguf_get_f32(&g, "llama.block_count", &f32, &err), &err, QREF_ERR_INVALID,
                      "has type UINT32, expected FLOAT32");
    test_assert_error(qref_gguf_get_bool(&g, "llama.block_count", &flag, &err), &err, QREF_ERR_INVALID,
                      "has type UINT32, expected BOOL");
    test_assert_error(qref_gguf_get_array(&g, "tokenizer.ggml.scores", QREF_GGUF_TYPE_INT32, &array, &err), &err,
                      QREF_ERR_INVALID, "\"tokenizer.ggml.scores\" is ARRAY of 512 FLOAT32, expected an ARRAY of INT32");
    test_assert_error(qref_gguf_get_array(&g, "general.name", QREF_GGUF_TYPE_COUNT, &array, &err), &err,
                      QREF_ERR_INVALID, "\"general.name\" is STRING, expected an ARRAY");

    assert_int_equal(qref_gguf_get_array(&g, "tokenizer.ggml.tokens", QREF_GGUF_TYPE_COUNT, &array, &err), QREF_OK);
    test_assert_error(qref_gguf_array_get_string(&array, 512, &s, &err), &err, QREF_ERR_INVALID,
                      "element 512 is out of range (the array has 512 elements)");
    test_assert_error(qref_gguf_array_get_f32(&array, 0, &f32, &err), &err, QREF_ERR_INVALID,
                      "is an ARRAY of STRING, expected an ARRAY of FLOAT32");
    test_assert_error(qref_gguf_array_get_i64(&array, 0, &i64, &err), &err, QREF_ERR_INVALID,
                      "expected an ARRAY of an integer type");

    const qref_gguf_tensor *t;
    test_assert_error(qref_gguf_get_tensor(&g, "blk.9.attn_q.weight", &t, &err), &err, QREF_ERR_INVALID,
                      "tensor \"blk.9.attn_q.weight\" is missing");
    assert_null(qref_gguf_find_tensor(&g, "blk.0.attn_q"));
    qref_gguf_free(&g);
}

/* ---- Malformed corpus from a fixed seed -------------------------------------------------- */

#define CORPUS_SEED 0x6767756675ull
#define CASE_KVS 7
#define CASE_TENSORS 3

typedef struct case_tensor {
    char name[96];
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t offset;
} case_tensor;

typedef struct case_file {
    char keys[CASE_KVS][96];
    uint32_t alignment_type; /* value type of general.alignment; QREF_GGUF_TYPE_COUNT omits the KV */
    uint32_t alignment;
    case_tensor tensors[CASE_TENSORS];
    size_t tensor_count;
    uint64_t data_size;
    uint64_t token_type_count; /* elements of tokenizer.ggml.token_type (3 tokens) */
    size_t long_token;         /* when non-zero, the third token is this many 'x' bytes */
} case_file;

/* Byte offsets of the fields of a rendered case, for patches and for the expected messages. */
typedef struct case_layout {
    size_t kv_key[CASE_KVS];   /* the key's length field */
    size_t kv_type[CASE_KVS];  /* the value type */
    size_t kv_value[CASE_KVS]; /* the value; for an array its element type, then count at +4 */
    size_t name[CASE_TENSORS]; /* the name's length field */
    size_t n_dims[CASE_TENSORS];
    size_t ne[CASE_TENSORS][4];
    size_t type[CASE_TENSORS];
    size_t offset[CASE_TENSORS];
    size_t data_start;
} case_layout;

/*
 * A valid file: 7 KVs (two strings, a UINT32, an ARRAY of 3 STRING, an ARRAY of 3 INT32, a BOOL,
 * general.alignment = 32) and 3 tensors back to back: an F32 [8, 3] (96 bytes, one row per
 * token) at 0, a Q8_0
 * [32, 8] (8 blocks of 34 = 272 bytes) at 96, a Q4_K [256, 2] (2 blocks of 144 = 288 bytes) at
 * 384 (368 padded to 32). The data is seeded random bytes.
 */
static void make_base(case_file *f)
{
    static const char *const keys[CASE_KVS] = {
        "general.architecture", "general.name",         "llama.block_count",           "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type", "tokenizer.ggml.add_bos_token", "general.alignment",
    };
    memset(f, 0, sizeof *f);
    for (int i = 0; i < CASE_KVS; i++)
        snprintf(f->keys[i], sizeof f->keys[i], "%s", keys[i]);
    f->alignment_type = QREF_GGUF_TYPE_UINT32;
    f->alignment = 32;
    f->tensor_count = 3;
    f->tensors[0] = (case_tensor){"token_embd.weight", 2, {8, 3}, QREF_GGML_TYPE_F32, 0};
    f->tensors[1] = (case_tensor){"blk.0.attn_q.weight", 2, {32, 8}, QREF_GGML_TYPE_Q8_0, 96};
    f->tensors[2] = (case_tensor){"blk.0.ffn_down.weight", 2, {256, 2}, QREF_GGML_TYPE_Q4_K, 384};
    f->data_size = 672;
    f->token_type_count = 3;
}

typedef struct buffer {
    uint8_t *data;
    size_t size, capacity;
} buffer;

static void put(buffer *b, const void *bytes, size_t n)
{
    if (b->size + n > b->capacity) {
        b->capacity = (b->size + n) * 2 + 64;
        b->data = realloc(b->data, b->capacity);
        assert_non_null(b->data);
    }
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
}

static void put_u32(buffer *b, uint32_t v)
{
    uint8_t bytes[4];
    qref_store_u32(bytes, v);
    put(b, bytes, 4);
}

static void put_u64(buffer *b, uint64_t v)
{
    uint8_t bytes[8];
    qref_store_u64(bytes, v);
    put(b, bytes, 8);
}

static void put_string(buffer *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

/* Renders a case to bytes and records where each field went. */
static uint8_t *render(const case_file *f, size_t *size, case_layout *layout)
{
    buffer b = {0};
    case_layout ignored;
    if (layout == NULL)
        layout = &ignored;
    memset(layout, 0, sizeof *layout);
    size_t kv_count = f->alignment_type == QREF_GGUF_TYPE_COUNT ? CASE_KVS - 1 : CASE_KVS;

    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, f->tensor_count);
    put_u64(&b, kv_count);

    for (size_t i = 0; i < kv_count; i++) {
        layout->kv_key[i] = b.size;
        put_string(&b, f->keys[i]);
        layout->kv_type[i] = b.size;
        switch (i) {
        case 0: put_u32(&b, QREF_GGUF_TYPE_STRING); layout->kv_value[i] = b.size; put_string(&b, "llama"); break;
        case 1: put_u32(&b, QREF_GGUF_TYPE_STRING); layout->kv_value[i] = b.size; put_string(&b, "case"); break;
        case 2: put_u32(&b, QREF_GGUF_TYPE_UINT32); layout->kv_value[i] = b.size; put_u32(&b, 1); break;
        case 3:
            put_u32(&b, QREF_GGUF_TYPE_ARRAY);
            layout->kv_value[i] = b.size;
            put_u32(&b, QREF_GGUF_TYPE_STRING);
            put_u64(&b, 3);
            put_string(&b, "<unk>");
            put_string(&b, "<s>");
            if (f->long_token == 0) {
                put_string(&b, "</s>");
            } else {
                put_u64(&b, f->long_token);
                for (size_t k = 0; k < f->long_token; k++)
                    put(&b, "x", 1);
            }
            break;
        case 4:
            put_u32(&b, QREF_GGUF_TYPE_ARRAY);
            layout->kv_value[i] = b.size;
            put_u32(&b, QREF_GGUF_TYPE_INT32);
            put_u64(&b, f->token_type_count);
            for (uint64_t k = 0; k < f->token_type_count; k++)
                put_u32(&b, k == 0 ? 2 : 3);
            break;
        case 5: put_u32(&b, QREF_GGUF_TYPE_BOOL); layout->kv_value[i] = b.size; put(&b, "\x01", 1); break;
        case 6:
            put_u32(&b, f->alignment_type);
            layout->kv_value[i] = b.size;
            if (f->alignment_type == QREF_GGUF_TYPE_UINT64)
                put_u64(&b, f->alignment);
            else
                put_u32(&b, f->alignment);
            break;
        }
    }

    for (size_t i = 0; i < f->tensor_count; i++) {
        const case_tensor *t = &f->tensors[i];
        layout->name[i] = b.size;
        put_string(&b, t->name);
        layout->n_dims[i] = b.size;
        put_u32(&b, t->n_dims);
        for (uint32_t j = 0; j < t->n_dims && j < 4; j++) {
            layout->ne[i][j] = b.size;
            put_u64(&b, t->ne[j]);
        }
        layout->type[i] = b.size;
        put_u32(&b, t->type);
        layout->offset[i] = b.size;
        put_u64(&b, t->offset);
    }

    /* Zero padding to the alignment, then the seeded data. */
    uint32_t alignment = f->alignment != 0 && (f->alignment & (f->alignment - 1)) == 0 ? f->alignment : 32;
    while (b.size % alignment != 0)
        put(&b, "", 1);
    layout->data_start = b.size;
    test_rng rng = {CORPUS_SEED};
    for (uint64_t i = 0; i < f->data_size; i++) {
        uint8_t byte = (uint8_t)test_rng_next(&rng);
        put(&b, &byte, 1);
    }
    *size = b.size;
    return b.data;
}

/* Parses bytes from an exact-size heap copy, so that AddressSanitizer detects any over-read. */
static qref_status parse_bytes(const uint8_t *bytes, size_t size, qref_gguf *g, qref_error *err)
{
    uint8_t *copy = malloc(size > 0 ? size : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, size);
    qref_status status = qref_gguf_parse("case.gguf", copy, size, g, err);
    if (status == QREF_OK)
        qref_gguf_free(g);
    free(copy);
    return status;
}

/* Renders f, applies no patch, and asserts the outcome. */
static void expect_case(const case_file *f, qref_status expected, const char *phrase)
{
    size_t size;
    uint8_t *bytes = render(f, &size, NULL);
    qref_gguf g;
    qref_error err = {0};
    qref_status status = parse_bytes(bytes, size, &g, &err);
    if (expected == QREF_OK && status != QREF_OK)
        print_error("%s\n", err.message);
    if (expected == QREF_OK)
        assert_int_equal(status, QREF_OK);
    else
        test_assert_error(status, &err, expected, phrase);
    free(bytes);
}

static void patch_u32(uint8_t *bytes, size_t at, uint32_t v)
{
    qref_store_u32(bytes + at, v);
}

static void patch_u64(uint8_t *bytes, size_t at, uint64_t v)
{
    qref_store_u64(bytes + at, v);
}

/* Parses a patched copy of the base file and asserts the outcome. */
static void expect_bytes(const uint8_t *bytes, size_t size, qref_status expected, const char *phrase)
{
    qref_gguf g;
    qref_error err = {0};
    test_assert_error(parse_bytes(bytes, size, &g, &err), &err, expected, phrase);
    assert_non_null(strstr(err.message, "case.gguf: "));
}

static void corpus_base_is_valid(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    size_t size;
    case_layout layout;
    uint8_t *bytes = render(&f, &size, &layout);
    qref_gguf g;
    qref_error err = {0};
    assert_int_equal(qref_gguf_parse("case.gguf", bytes, size, &g, &err), QREF_OK);
    assert_int_equal(g.kv_count, CASE_KVS);
    assert_int_equal(g.tensor_count, 3);
    assert_int_equal(g.data_offset, layout.data_start);
    assert_true(g.contiguous);
    assert_int_equal(g.tensors[1].nbytes, 272);
    assert_int_equal(g.tensors[2].nbytes, 288);
    assert_ptr_equal(g.tensors[2].data, bytes + layout.data_start + 384);
    assert_int_equal(g.tensors[1].info_offset, layout.name[1]);
    const qref_gguf_kv *kv = qref_gguf_find_kv(&g, "tokenizer.ggml.tokens");
    assert_non_null(kv);
    assert_int_equal(kv->value_offset, layout.kv_value[3] + 12);
    qref_gguf_array tokens;
    qref_gguf_string s;
    assert_int_equal(qref_gguf_get_array(&g, "tokenizer.ggml.tokens", QREF_GGUF_TYPE_STRING, &tokens, &err), QREF_OK);
    assert_int_equal(qref_gguf_array_get_string(&tokens, 2, &s, &err), QREF_OK);
    assert_int_equal(s.length, 4);
    assert_memory_equal(s.data, "</s>", 4);
    qref_gguf_free(&g);
    free(bytes);

    /* The format requires only aligned offsets, so gaps and any order parse. ggml's reader
     * rejects them, and the contiguous field records that. */
    f.tensors[0].offset = 640;
    f.tensors[1].offset = 288;
    f.tensors[2].offset = 0;
    f.data_size = 736;
    bytes = render(&f, &size, &layout);
    assert_int_equal(qref_gguf_parse("case.gguf", bytes, size, &g, &err), QREF_OK);
    assert_false(g.contiguous);
    qref_gguf_free(&g);
    free(bytes);

    /* A larger alignment moves the data section and every offset check. */
    make_base(&f);
    f.alignment = 256;
    f.tensors[1].offset = 256;
    f.tensors[2].offset = 768;
    f.data_size = 768 + 288;
    bytes = render(&f, &size, &layout);
    assert_int_equal(qref_gguf_parse("case.gguf", bytes, size, &g, &err), QREF_OK);
    assert_int_equal(g.alignment, 256);
    assert_int_equal(g.data_offset % 256, 0);
    assert_true(g.contiguous);
    qref_gguf_free(&g);
    free(bytes);

    /* Without general.alignment the default is 32. */
    make_base(&f);
    f.alignment_type = QREF_GGUF_TYPE_COUNT;
    bytes = render(&f, &size, &layout);
    assert_int_equal(qref_gguf_parse("case.gguf", bytes, size, &g, &err), QREF_OK);
    assert_int_equal(g.alignment, 32);
    qref_gguf_free(&g);
    free(bytes);
}

static void corpus_magic_and_version(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    size_t size;
    uint8_t *bytes = render(&f, &size, NULL);

    memcpy(bytes, "GGML", 4);
    expect_bytes(bytes, size, QREF_ERR_INVALID, "magic at byte 0 is 47 47 4d 4c (\"GGML\"), expected 47 47 55 46");
    memcpy(bytes, "GGUF", 4);

    /* Version 1 stored 32-bit counts; a byte-swapped 3 is a big-endian file. */
    const struct {
        uint32_t version;
        qref_status status;
        const char *phrase;
    } versions[] = {
        {1, QREF_ERR_UNSUPPORTED, "version at byte 4 is 1: GGUF v1 is not supported"},
        {0, QREF_ERR_INVALID, "version at byte 4 is 0, expected 2 or 3"},
        {4, QREF_ERR_UNSUPPORTED, "version at byte 4 is 4, newer than the supported versions 2 and 3"},
        {0x03000000u, QREF_ERR_UNSUPPORTED, "(0x03000000), a byte-swapped version: big-endian GGUF files"},
    };
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        patch_u32(bytes, 4, versions[i].version);
        expect_bytes(bytes, size, versions[i].status, versions[i].phrase);
    }

    /* Version 2 has the same layout as 3 and parses. */
    patch_u32(bytes, 4, 2);
    qref_gguf g;
    qref_error err = {0};
    assert_int_equal(parse_bytes(bytes, size, &g, &err), QREF_OK);
    free(bytes);
}

static void corpus_counts(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    size_t size;
    uint8_t *bytes = render(&f, &size, NULL);

    /* CVE-2024-25666 / -21836: a tensor count whose allocation size wraps. */
    patch_u64(bytes, 8, 1ull << 60);
    expect_bytes(bytes, size, QREF_ERR_INVALID, "tensor count at byte 8 is 1152921504606846976, above the limit of");
    patch_u64(bytes, 8, UINT64_MAX);
    expect_bytes(bytes, size, QREF_ERR_INVALID, "tensor count at byte 8 is 18446744073709551615");
    /* Just above what the bytes after the header can hold. */
    uint64_t fit = (size - 24) / 33;
    patch_u64(bytes, 8, fit + 1);
    char phrase[160];
    snprintf(phrase, sizeof phrase, "above the limit of %" PRIu64 ": the %zu bytes after the header hold at most",
             fit, size - 24);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    patch_u64(bytes, 8, 3);

    /* CVE-2024-25664 / -23605: the KV count of the Databricks report. */
    patch_u64(bytes, 16, 0x055555555555555Aull);
    expect_bytes(bytes, size, QREF_ERR_INVALID, "KV count at byte 16 is 384307168202282330, above the limit of");
    free(bytes);
}

static void corpus_strings(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    size_t size;
    case_layout layout;
    uint8_t *bytes = render(&f, &size, &layout);
    char phrase[200];

    /* CVE-2024-25665 / -23496: a length of 2^64 - 1, whose + 1 wraps to 0. */
    patch_u64(bytes, layout.kv_key[1], UINT64_MAX);
    snprintf(phrase, sizeof phrase, "KV 1 key length at byte %zu is 18446744073709551615, above the limit of 65535",
             layout.kv_key[1]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    patch_u64(bytes, layout.kv_key[1], strlen("general.name"));

    patch_u64(bytes, layout.kv_value[1], UINT64_MAX);
    snprintf(phrase, sizeof phrase,
             "KV 1 \"general.name\" string length at byte %zu is 18446744073709551615, above the limit of 1073741824",
             layout.kv_value[1]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);

    /* A length within the cap but past the end of the file. */
    patch_u64(bytes, layout.kv_value[1], 1u << 20);
    snprintf(phrase, sizeof phrase, "string length at byte %zu is 1048576, but only %zu bytes remain", layout.kv_value[1],
             size - layout.kv_value[1] - 8);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    patch_u64(bytes, layout.kv_value[1], 4);

    /* A string element of an array, the third token. */
    size_t third = layout.kv_value[3] + 12 + (8 + 5) + (8 + 3);
    patch_u64(bytes, third, size);
    snprintf(phrase, sizeof phrase, "KV 3 \"tokenizer.ggml.tokens\" element 2 string length at byte %zu is %zu", third,
             size);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);
}

static void corpus_arrays(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    size_t size;
    case_layout layout;
    uint8_t *bytes = render(&f, &size, &layout);
    char phrase[200];
    size_t count_at = layout.kv_value[4] + 4;

    /* CVE-2024-25667: an element count whose byte size wraps (2^61 UINT64 = 2^64 bytes). */
    patch_u32(bytes, layout.kv_value[4], QREF_GGUF_TYPE_UINT64);
    patch_u64(bytes, count_at, 1ull << 61);
    snprintf(phrase, sizeof phrase, "KV 4 \"tokenizer.ggml.token_type\" array count at byte %zu is 2305843009213693952",
             count_at);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);

    /* CVE-2024-25668: an ARRAY of STRING with 2^60 elements. */
    patch_u32(bytes, layout.kv_value[4], QREF_GGUF_TYPE_STRING);
    patch_u64(bytes, count_at, 1ull << 60);
    expect_bytes(bytes, size, QREF_ERR_INVALID, "array count at byte");
    expect_bytes(bytes, size, QREF_ERR_INVALID, "STRING elements of 8 bytes or more");

    /* A count that the bytes left cannot hold: 4 INT32 need 16 bytes, fine; the remaining bytes
     * / 4 + 1 cannot. */
    patch_u32(bytes, layout.kv_value[4], QREF_GGUF_TYPE_INT32);
    uint64_t fit = (size - count_at - 8) / 4;
    patch_u64(bytes, count_at, fit + 1);
    snprintf(phrase, sizeof phrase, "above the limit of %" PRIu64 ": the %zu bytes remaining hold at most", fit,
             size - count_at - 8);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    patch_u64(bytes, count_at, 3);

    /* Nested arrays: no published model writes them, and deep nesting exhausted gguf-py. */
    patch_u32(bytes, layout.kv_value[4], QREF_GGUF_TYPE_ARRAY);
    snprintf(phrase, sizeof phrase, "array element type at byte %zu is ARRAY: nested arrays are not supported",
             layout.kv_value[4]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);

    /* Databricks: an element type used unchecked as a table index. */
    patch_u32(bytes, layout.kv_value[4], 99);
    snprintf(phrase, sizeof phrase, "array element type at byte %zu is 99, expected a GGUF value type 0 to 12",
             layout.kv_value[4]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);
}

static void corpus_value_types_and_bools(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    size_t size;
    case_layout layout;
    uint8_t *bytes = render(&f, &size, &layout);
    char phrase[200];

    patch_u32(bytes, layout.kv_type[2], QREF_GGUF_TYPE_COUNT);
    snprintf(phrase, sizeof phrase,
             "KV 2 \"llama.block_count\" value type at byte %zu is 13, expected a GGUF value type 0 to 12",
             layout.kv_type[2]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    patch_u32(bytes, layout.kv_type[2], 0xFFFFFFFFu);
    expect_bytes(bytes, size, QREF_ERR_INVALID, "value type at byte");
    patch_u32(bytes, layout.kv_type[2], QREF_GGUF_TYPE_UINT32);

    /* docs/gguf.md: a BOOL other than 0 or 1 is invalid. */
    bytes[layout.kv_value[5]] = 2;
    snprintf(phrase, sizeof phrase, "KV 5 \"tokenizer.ggml.add_bos_token\": BOOL value at byte %zu is 2, expected 0 or 1",
             layout.kv_value[5]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);
}

static void corpus_keys(void **state)
{
    (void)state;
    case_file f;
    char phrase[200];
    size_t size;
    case_layout layout;

    make_base(&f);
    snprintf(f.keys[4], sizeof f.keys[4], "general.name");
    uint8_t *bytes = render(&f, &size, &layout);
    snprintf(phrase, sizeof phrase, "KV 4 key \"general.name\" at byte %zu duplicates KV 1; keys must be unique",
             layout.kv_key[4]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);

    make_base(&f);
    f.keys[2][0] = '\0';
    bytes = render(&f, &size, &layout);
    snprintf(phrase, sizeof phrase, "KV 2 key at byte %zu is empty", layout.kv_key[2]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);

    make_base(&f);
    snprintf(f.keys[2], sizeof f.keys[2], "llama.caf\xc3\xa9");
    bytes = render(&f, &size, &layout);
    expect_bytes(bytes, size, QREF_ERR_INVALID, "KV 2 key at byte");
    expect_bytes(bytes, size, QREF_ERR_INVALID, "has byte 0xc3 at position 9, expected printable ASCII");
    free(bytes);
}

static void corpus_alignment(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    f.alignment = 0;
    expect_case(&f, QREF_ERR_INVALID, "KV \"general.alignment\" at byte");
    expect_case(&f, QREF_ERR_INVALID, "is 0, expected a non-zero power of two");
    f.alignment = 3;
    expect_case(&f, QREF_ERR_INVALID, "is 3, expected a non-zero power of two");
    f.alignment = 48;
    expect_case(&f, QREF_ERR_INVALID, "is 48, expected a non-zero power of two");

    /* An alignment of another type must not be read as a UINT32 (ggml asserted on an INT32). */
    make_base(&f);
    f.alignment_type = QREF_GGUF_TYPE_INT32;
    expect_case(&f, QREF_ERR_INVALID, "has type INT32, expected UINT32");
    f.alignment_type = QREF_GGUF_TYPE_UINT64;
    expect_case(&f, QREF_ERR_INVALID, "has type UINT64, expected UINT32");
}

static void corpus_tensor_names(void **state)
{
    (void)state;
    case_file f;
    char phrase[200];
    size_t size;
    case_layout layout;

    /* ggml keeps names in char[64] with the NUL: 63 bytes fit, 64 do not. */
    make_base(&f);
    memset(f.tensors[1].name, 'a', 63);
    f.tensors[1].name[63] = '\0';
    expect_case(&f, QREF_OK, NULL);
    f.tensors[1].name[63] = 'a';
    f.tensors[1].name[64] = '\0';
    uint8_t *bytes = render(&f, &size, &layout);
    snprintf(phrase, sizeof phrase, "tensor 1 name length at byte %zu is 64, above the limit of 63 bytes",
             layout.name[1]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);

    make_base(&f);
    f.tensors[2].name[0] = '\0';
    expect_case(&f, QREF_ERR_INVALID, "tensor 2 name at byte");
    expect_case(&f, QREF_ERR_INVALID, "is empty, expected 1 to 63 bytes");

    make_base(&f);
    snprintf(f.tensors[2].name, sizeof f.tensors[2].name, "bad\nname");
    expect_case(&f, QREF_ERR_INVALID, "has control byte 0x0a at position 3");

    make_base(&f);
    snprintf(f.tensors[2].name, sizeof f.tensors[2].name, "token_embd.weight");
    bytes = render(&f, &size, &layout);
    snprintf(phrase, sizeof phrase,
             "tensor 2 name \"token_embd.weight\" at byte %zu duplicates tensor 0; tensor names must be unique",
             layout.name[2]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);
}

static void corpus_tensor_shapes(void **state)
{
    (void)state;
    case_file f;
    char phrase[200];
    size_t size;
    case_layout layout;
    make_base(&f);
    uint8_t *bytes = render(&f, &size, &layout);

    /* CVE-2024-21802: n_dims beyond ggml's ne[4]. */
    const uint32_t bad_dims[] = {5, 255, 0};
    for (size_t i = 0; i < 3; i++) {
        patch_u32(bytes, layout.n_dims[1], bad_dims[i]);
        snprintf(phrase, sizeof phrase, "tensor 1 \"blk.0.attn_q.weight\" n_dims at byte %zu is %u, expected 1 to 4",
                 layout.n_dims[1], bad_dims[i]);
        expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    }
    patch_u32(bytes, layout.n_dims[1], 2);

    /* A dimension of 0 once reached a division by zero in ggml's size overflow check. */
    patch_u64(bytes, layout.ne[1][1], 0);
    snprintf(phrase, sizeof phrase, "tensor 1 \"blk.0.attn_q.weight\" ne[1] at byte %zu is 0, expected 1 to", layout.ne[1][1]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    patch_u64(bytes, layout.ne[1][1], 1ull << 63);
    expect_bytes(bytes, size, QREF_ERR_INVALID, "is 9223372036854775808, expected 1 to 9223372036854775807");
    free(bytes);

    /* The element count overflows int64: 2^32 * 2^32. */
    make_base(&f);
    f.tensors[0].ne[0] = 1ull << 32;
    f.tensors[0].ne[1] = 1ull << 32;
    bytes = render(&f, &size, &layout);
    snprintf(phrase, sizeof phrase, "ne[1] at byte %zu is 4294967296: the element count of the dimensions so far exceeds",
             layout.ne[0][1]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);

    /* CVE-2026-33298: elements that fit, bytes that do not (2^62 F32 = 2^64 bytes). */
    make_base(&f);
    f.tensors[0].n_dims = 1;
    f.tensors[0].ne[0] = 1ull << 62;
    expect_case(&f, QREF_ERR_INVALID,
                "tensor 0 \"token_embd.weight\": 4611686018427387904 elements of F32 take more than 2^64 bytes");

    /* A dimension of 2^42 + 1 gives a huge but representable size, which must then fail the
     * bounds check. */
    make_base(&f);
    f.tensors[0].ne[0] = (1ull << 42) + 1;
    f.tensors[0].ne[1] = 1152;
    expect_case(&f, QREF_ERR_INVALID, "tensor 0 \"token_embd.weight\": offset 0 + 20266198323171840 bytes");
    expect_case(&f, QREF_ERR_INVALID, "runs past the end of the file");
}

static void corpus_tensor_types(void **state)
{
    (void)state;
    case_file f;
    char phrase[200];
    size_t size;
    case_layout layout;
    make_base(&f);
    uint8_t *bytes = render(&f, &size, &layout);

    const struct {
        uint32_t type;
        const char *what;
    } bad[] = {
        {43, "is 43, an unknown ggml type (expected below 43)"},
        {0xFFFFFFFFu, "is 4294967295, an unknown ggml type"},
        {4, "is 4 (Q4_2), a type that ggml removed"},
        {31, "is 31 (Q4_0_4_4), a type that ggml removed"},
        {38, "is 38 (IQ4_NL_8_8), a type that ggml removed"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        patch_u32(bytes, layout.type[1], bad[i].type);
        snprintf(phrase, sizeof phrase, "tensor 1 \"blk.0.attn_q.weight\" type at byte %zu %s", layout.type[1],
                 bad[i].what);
        expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    }
    free(bytes);

    /* ne[0] must be a whole number of blocks. */
    make_base(&f);
    f.tensors[2].ne[0] = 100;
    expect_case(&f, QREF_ERR_INVALID,
                "tensor 2 \"blk.0.ffn_down.weight\": ne[0] = 100 is not a multiple of the Q4_K block size 256");
    make_base(&f);
    f.tensors[1].ne[0] = 48;
    expect_case(&f, QREF_ERR_INVALID, "ne[0] = 48 is not a multiple of the Q8_0 block size 32");

    /* A valid type without a dequantizer parses (reported when decoding): IQ2_XXS, 66 bytes per
     * 256 elements, as the third tensor. */
    make_base(&f);
    f.tensors[2].type = QREF_GGML_TYPE_IQ2_XXS;
    expect_case(&f, QREF_OK, NULL);
}

static void corpus_offsets(void **state)
{
    (void)state;
    case_file f;
    char phrase[200];
    size_t size;
    case_layout layout;

    make_base(&f);
    f.tensors[1].offset = 112;
    uint8_t *bytes = render(&f, &size, &layout);
    snprintf(phrase, sizeof phrase,
             "tensor 1 \"blk.0.attn_q.weight\" offset at byte %zu is 112, not a multiple of the alignment 32",
             layout.offset[1]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);

    /* CVE-2026-7482: a tensor past the end of the file. */
    make_base(&f);
    f.tensors[2].offset = 416;
    bytes = render(&f, &size, &layout);
    snprintf(phrase, sizeof phrase,
             "tensor 2 \"blk.0.ffn_down.weight\": offset 416 + 288 bytes from the data section at byte %zu runs past "
             "the end of the file at byte %zu",
             layout.data_start, size);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    free(bytes);
    make_base(&f);
    f.tensors[0].offset = UINT64_MAX - 31;
    expect_case(&f, QREF_ERR_INVALID, "tensor 0 \"token_embd.weight\": offset 18446744073709551584 + 96 bytes");

    /* Overlaps: the same offset twice, and a tensor that starts inside another. */
    make_base(&f);
    f.tensors[1].offset = 0;
    expect_case(&f, QREF_ERR_INVALID,
                "tensor 1 \"blk.0.attn_q.weight\" at data offset 0 overlaps tensor 0 \"token_embd.weight\", which "
                "spans [0, 96)");
    make_base(&f);
    f.tensors[2].offset = 352;
    f.data_size = 352 + 288;
    expect_case(&f, QREF_ERR_INVALID,
                "tensor 2 \"blk.0.ffn_down.weight\" at data offset 352 overlaps tensor 1 \"blk.0.attn_q.weight\", "
                "which spans [96, 368)");
}

/* The vocabulary agrees with itself, with token_embd.weight and with the llama.* keys. */
static void corpus_vocabulary(void **state)
{
    (void)state;
    case_file f;
    char phrase[240];
    size_t size;
    case_layout layout;

    make_base(&f);
    f.token_type_count = 4;
    expect_case(&f, QREF_ERR_INVALID,
                "KV \"tokenizer.ggml.token_type\" has 4 elements, but tokenizer.ggml.tokens has 3 tokens");

    /* The tokens must be strings. */
    make_base(&f);
    snprintf(f.keys[3], sizeof f.keys[3], "tokenizer.ggml.merges");
    snprintf(f.keys[4], sizeof f.keys[4], "tokenizer.ggml.tokens");
    expect_case(&f, QREF_ERR_INVALID,
                "\"tokenizer.ggml.tokens\" is ARRAY of 3 INT32, expected an ARRAY of STRING");

    /* CVE-2025-49847: a token long enough to overflow an int32 length. The cap is 1 MiB. */
    make_base(&f);
    f.long_token = (1u << 20) + 1;
    expect_case(&f, QREF_ERR_INVALID,
                "KV \"tokenizer.ggml.tokens\" element 2 at byte");
    expect_case(&f, QREF_ERR_INVALID, "is 1048577 bytes long, above the limit of 1048576 bytes for a token");
    f.long_token = 1u << 20;
    expect_case(&f, QREF_OK, NULL);

    /* GHSA-g4cc-763q-h9h6: a special id past the vocabulary. KV 2 becomes the BOS id. */
    make_base(&f);
    snprintf(f.keys[2], sizeof f.keys[2], "tokenizer.ggml.bos_token_id");
    uint8_t *bytes = render(&f, &size, &layout);
    qref_gguf g;
    qref_error err = {0};
    assert_int_equal(parse_bytes(bytes, size, &g, &err), QREF_OK);
    patch_u32(bytes, layout.kv_value[2], 3);
    snprintf(phrase, sizeof phrase,
             "KV \"tokenizer.ggml.bos_token_id\" at byte %zu is 3, but the vocabulary has 3 tokens",
             layout.kv_value[2]);
    expect_bytes(bytes, size, QREF_ERR_INVALID, phrase);
    /* 4294967295 (as converters write -1 into a UINT32) means no such token. */
    patch_u32(bytes, layout.kv_value[2], UINT32_MAX);
    assert_int_equal(parse_bytes(bytes, size, &g, &err), QREF_OK);
    patch_u32(bytes, layout.kv_type[2], QREF_GGUF_TYPE_FLOAT32);
    expect_bytes(bytes, size, QREF_ERR_INVALID,
                 "KV \"tokenizer.ggml.bos_token_id\" has type FLOAT32, expected an integer token id");
    free(bytes);

    make_base(&f);
    snprintf(f.keys[2], sizeof f.keys[2], "llama.vocab_size");
    expect_case(&f, QREF_ERR_INVALID, "KV \"llama.vocab_size\" is 1, but tokenizer.ggml.tokens has 3 tokens");

    /* One embedding row per token: 4 rows for 3 tokens. */
    make_base(&f);
    f.tensors[0].ne[1] = 4;
    f.tensors[1].offset = 128;
    f.tensors[2].offset = 416;
    f.data_size = 416 + 288;
    expect_case(&f, QREF_ERR_INVALID,
                "tensor \"token_embd.weight\" has 4 rows (ne[1]), but tokenizer.ggml.tokens has 3 tokens");
}

/* Layer tensors stay below llama.block_count = 1, which readers use to size per-layer tables. */
static void corpus_block_indexes(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    snprintf(f.tensors[1].name, sizeof f.tensors[1].name, "blk.1.attn_q.weight");
    expect_case(&f, QREF_ERR_INVALID,
                "tensor 1 \"blk.1.attn_q.weight\" belongs to layer 1, but KV \"llama.block_count\" is 1");
    snprintf(f.tensors[1].name, sizeof f.tensors[1].name, "blk.99999999999999999999999.attn_q.weight");
    expect_case(&f, QREF_ERR_INVALID, "belongs to layer above");
    /* Without the key, or under another architecture's name, nothing is checked. */
    snprintf(f.keys[2], sizeof f.keys[2], "mpt.block_count");
    expect_case(&f, QREF_OK, NULL);
}

/* Every proper prefix of the base file is rejected as truncated, never read past its end. */
static void corpus_truncated_everywhere(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    size_t size;
    case_layout layout;
    uint8_t *bytes = render(&f, &size, &layout);
    for (size_t cut = 0; cut < size; cut++) {
        qref_gguf g;
        qref_error err = {0};
        qref_status status = parse_bytes(bytes, cut, &g, &err);
        if (status != QREF_ERR_INVALID || strstr(err.message, "truncated") == NULL)
            fail_msg("cut at %zu of %zu: status %d, message: %s", cut, size, status, err.message);
    }
    free(bytes);
}

/* A corpus file on disk goes through qref_gguf_open; a missing file is an I/O error. */
static void corpus_file_on_disk(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    size_t size;
    uint8_t *bytes = render(&f, &size, NULL);
    const char *path = test_tmp_path("gguf_base.gguf");
    test_write_file(path, bytes, size);
    qref_gguf g;
    qref_error err = {0};
    assert_int_equal(qref_gguf_open(path, &g, &err), QREF_OK);
    assert_int_equal(g.size, size);
    assert_non_null(qref_gguf_find_tensor(&g, "blk.0.ffn_down.weight"));
    qref_gguf_free(&g);

    bytes[0] = 'X';
    path = test_tmp_path("gguf_bad_magic.gguf");
    test_write_file(path, bytes, size);
    test_assert_error(qref_gguf_open(path, &g, &err), &err, QREF_ERR_INVALID, "gguf_bad_magic.gguf: magic at byte 0");
    test_assert_error(qref_gguf_open(test_tmp_path("gguf_missing.gguf"), &g, &err), &err, QREF_ERR_IO,
                      "cannot open");
    free(bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixture_synth256_q4_k_m),
        cmocka_unit_test(fixture_stories260k_q4_k_m),
        cmocka_unit_test(fixture_vocabularies_match_sentencepiece),
        cmocka_unit_test(fixture_llama2_vocab_only),
        cmocka_unit_test(fixture_llama2_tiny_random),
        cmocka_unit_test(getters_check_types),
        cmocka_unit_test(corpus_base_is_valid),
        cmocka_unit_test(corpus_magic_and_version),
        cmocka_unit_test(corpus_counts),
        cmocka_unit_test(corpus_strings),
        cmocka_unit_test(corpus_arrays),
        cmocka_unit_test(corpus_value_types_and_bools),
        cmocka_unit_test(corpus_keys),
        cmocka_unit_test(corpus_alignment),
        cmocka_unit_test(corpus_tensor_names),
        cmocka_unit_test(corpus_tensor_shapes),
        cmocka_unit_test(corpus_tensor_types),
        cmocka_unit_test(corpus_offsets),
        cmocka_unit_test(corpus_vocabulary),
        cmocka_unit_test(corpus_block_indexes),
        cmocka_unit_test(corpus_truncated_everywhere),
        cmocka_unit_test(corpus_file_on_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
