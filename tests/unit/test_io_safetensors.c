/*
 * safetensors reader and writer.
 *
 * Expected values come from three independent places. The fixtures' config.json files give
 * the tensor shapes a LLaMA of that config has. The reference Rust implementation's own test
 * vectors (huggingface/safetensors, safetensors/src/tensor.rs: test_serialization, test_empty,
 * test_serialization_forced_alignement, test_deserialization, ...) give exact bytes and
 * outcomes. A malformed corpus built here from a fixed seed has one file per failure kind.
 */
#include "test_support.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/qref_blob.h"
#include "io/qref_json.h"
#include "io/qref_safetensors.h"
#include "model/qref_config.h"

static qref_status parse_bytes(const void *data, size_t size, qref_safetensors *st, qref_error *err)
{
    return qref_safetensors_parse("case.safetensors", data, size, st, err);
}

/* ---- Fixtures ---------------------------------------------------------------------------- */

typedef struct expected_tensor {
    char name[96];
    const char *dtype;
    int ndim;
    int64_t shape[2];
} expected_tensor;

static void expect(expected_tensor *list, size_t *count, const char *name, const char *dtype, int ndim, int64_t d0,
                   int64_t d1)
{
    expected_tensor *e = &list[(*count)++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = dtype;
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = d1;
}

static void load_config(const char *relative, qref_llama_config *config)
{
    size_t size;
    char *text = test_read_file(test_fixture_path(relative), &size);
    qref_error err = {0};
    assert_int_equal(qref_llama_config_parse(relative, text, size, config, &err), QREF_OK);
    free(text);
}

/* Checks that the parsed tensors are exactly the expected list. */
static void assert_tensors_match(const qref_tensor_set *set, const expected_tensor *list, size_t count)
{
    assert_int_equal(set->count, count);
    for (size_t i = 0; i < count; i++) {
        const qref_tensor *t = qref_tensor_set_find(set, list[i].name);
        if (t == NULL)
            print_error("missing tensor %s\n", list[i].name);
        assert_non_null(t);
        assert_string_equal(qref_dtype_name(t->dtype), list[i].dtype);
        assert_int_equal(t->ndim, list[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], list[i].shape[d]);
    }
}

/* Tensors of an unquantized LLaMA with tied embeddings (no lm_head.weight) in dtype. */
static size_t expected_dense(const qref_llama_config *c, const char *dtype, expected_tensor *list)
{
    size_t n = 0;
    int64_t q_rows = (int64_t)c->num_attention_heads * c->head_dim;
    int64_t kv_rows = (int64_t)c->num_key_value_heads * c->head_dim;
    expect(list, &n, "model.embed_tokens.weight", dtype, 2, c->vocab_size, c->hidden_size);
    expect(list, &n, "model.norm.weight", dtype, 1, c->hidden_size, 0);
    for (int layer = 0; layer < c->num_hidden_layers; layer++) {
        char name[96];
#define LAYER(suffix, nd, a, b)                                                                                        \
    snprintf(name, sizeof name, "model.layers.%d.%s", layer, suffix);                                                  \
    expect(list, &n, name, dtype, nd, a, b)
        LAYER("input_layernorm.weight", 1, c->hidden_size, 0);
        LAYER("post_attention_layernorm.weight", 1, c->hidden_size, 0);
        LAYER("self_attn.q_proj.weight", 2, q_rows, c->hidden_size);
        LAYER("self_attn.k_proj.weight", 2, kv_rows, c->hidden_size);
        LAYER("self_attn.v_proj.weight", 2, kv_rows, c->hidden_size);
        LAYER("self_attn.o_proj.weight", 2, c->hidden_size, q_rows);
        LAYER("mlp.gate_proj.weight", 2, c->intermediate_size, c->hidden_size);
        LAYER("mlp.up_proj.weight", 2, c->intermediate_size, c->hidden_size);
        LAYER("mlp.down_proj.weight", 2, c->hidden_size, c->intermediate_size);
#undef LAYER
    }
    return n;
}

static void parse_fixture(const char *relative, qref_blob *blob, qref_safetensors *st)
{
    qref_error err = {0};
    assert_int_equal(qref_blob_map_file(test_fixture_path(relative), blob, &err), QREF_OK);
    qref_status status = qref_safetensors_parse(relative, blob->data, blob->size, st, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
}

static void fixture_stories260k_tensors(void **state)
{
    (void)state;
    qref_llama_config config;
    load_config("models/stories260k/config.json", &config);
    expected_tensor list[128];
    size_t count = expected_dense(&config, "F32", list);
    assert_int_equal(count, 47);

    qref_blob blob;
    qref_safetensors st;
    parse_fixture("models/stories260k/model.safetensors", &blob, &st);
    assert_tensors_match(&st.tensors, list, count);

    /* Header length and offsets as Python's struct and json modules read them. */
    assert_int_equal(st.header_size, 4856);
    const qref_tensor *norm = qref_tensor_set_find(&st.tensors, "model.norm.weight");
    assert_ptr_equal(norm->data, blob.data + 8 + 4856 + 1039872);
    assert_int_equal(norm->nbytes, 256);
    assert_string_equal(norm->file, "models/stories260k/model.safetensors");
    assert_int_equal(st.metadata_count, 1);
    assert_string_equal(st.metadata[0].key, "format");
    assert_string_equal(st.metadata[0].value, "pt");
    qref_safetensors_free(&st);
    qref_blob_free(&blob);
}

static void fixture_synth256_tensors(void **state)
{
    (void)state;
    qref_llama_config config;
    load_config("models/synth256/config.json", &config);
    expected_tensor list[64];
    size_t count = expected_dense(&config, "F32", list);

    qref_blob blob;
    qref_safetensors st;
    parse_fixture("models/synth256/model.safetensors", &blob, &st);
    assert_tensors_match(&st.tensors, list, count);
    assert_int_equal(st.header_size, 2120);
    qref_safetensors_free(&st);
    qref_blob_free(&blob);
}

/*
 * AutoGPTQ layout per Linear (in = input features, out = output features, b bits, G group):
 * qweight I32 [in*b/32, out], qzeros I32 [in/G, out*b/32], scales F16 [in/G, out],
 * g_idx I32 [in]; embeddings and norms stay F16.
 */
static void fixture_autogptq_tensors(void **state)
{
    (void)state;
    qref_llama_config c;
    load_config("models/synth256-autogptq-w4g128/config.json", &c);
    size_t size;
    char *text = test_read_file(test_fixture_path("models/synth256-autogptq-w4g128/quantize_config.json"), &size);
    cJSON *quant = NULL;
    qref_error err = {0};
    assert_int_equal(qref_json_parse("quantize_config.json", text, size, 4, &quant, &err), QREF_OK);
    int64_t bits = 0, group = 0;
    assert_int_equal(qref_json_get_int("q", quant, "bits", true, 0, 1, 8, &bits, &err), QREF_OK);
    assert_int_equal(qref_json_get_int("q", quant, "group_size", true, 0, 1, 4096, &group, &err), QREF_OK);
    cJSON_Delete(quant);
    free(text);

    expected_tensor list[128];
    size_t n = 0;
    expect(list, &n, "model.embed_tokens.weight", "F16", 2, c.vocab_size, c.hidden_size);
    expect(list, &n, "model.norm.weight", "F16", 1, c.hidden_size, 0);
    int64_t q_rows = (int64_t)c.num_attention_heads * c.head_dim;
    int64_t kv_rows = (int64_t)c.num_key_value_heads * c.head_dim;
    struct {
        const char *name;
        int64_t in, out;
    } linears[] = {
        {"self_attn.q_proj", c.hidden_size, q_rows},       {"self_attn.k_proj", c.hidden_size, kv_rows},
        {"self_attn.v_proj", c.hidden_size, kv_rows},      {"self_attn.o_proj", q_rows, c.hidden_size},
        {"mlp.gate_proj", c.hidden_size, c.intermediate_size}, {"mlp.up_proj", c.hidden_size, c.intermediate_size},
        {"mlp.down_proj", c.intermediate_size, c.hidden_size},
    };
    for (int layer = 0; layer < c.num_hidden_layers; layer++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
        expect(list, &n, name, "F16", 1, c.hidden_size, 0);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
        expect(list, &n, name, "F16", 1, c.hidden_size, 0);
        for (size_t i = 0; i < sizeof linears / sizeof linears[0]; i++) {
            int64_t in = linears[i].in, out = linears[i].out;
            snprintf(name, sizeof name, "model.layers.%d.%s.qweight", layer, linears[i].name);
            expect(list, &n, name, "I32", 2, in * bits / 32, out);
            snprintf(name, sizeof name, "model.layers.%d.%s.qzeros", layer, linears[i].name);
            expect(list, &n, name, "I32", 2, in / group, out * bits / 32);
            snprintf(name, sizeof name, "model.layers.%d.%s.scales", layer, linears[i].name);
            expect(list, &n, name, "F16", 2, in / group, out);
            snprintf(name, sizeof name, "model.layers.%d.%s.g_idx", layer, linears[i].name);
            expect(list, &n, name, "I32", 1, in, 0);
        }
    }

    qref_blob blob;
    qref_safetensors st;
    parse_fixture("models/synth256-autogptq-w4g128/model.safetensors", &blob, &st);
    assert_tensors_match(&st.tensors, list, n);
    qref_safetensors_free(&st);
    qref_blob_free(&blob);
}

/* ---- Reference test vectors from tensor.rs ------------------------------------------------ */

/* Builds 8-byte length + header + tail into a heap buffer. */
static uint8_t *make_raw(uint64_t length, const char *header, size_t header_bytes, const void *tail, size_t tail_size,
                         size_t *size)
{
    *size = 8 + header_bytes + tail_size;
    uint8_t *buffer = calloc(1, *size);
    assert_non_null(buffer);
    qref_store_u64(buffer, length);
    memcpy(buffer + 8, header, header_bytes);
    if (tail_size > 0)
        memcpy(buffer + 8 + header_bytes, tail, tail_size);
    return buffer;
}

static void reference_vectors_accepted(void **state)
{
    (void)state;
    static const uint8_t zeros[16] = {0};
    static const struct {
        const char *header;
        size_t data_size;
        size_t tensors;
    } cases[] = {
        {"{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, 1},  /* test_deserialization */
        {"{\"test\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 1},      /* test_empty_shapes_allowed */
        {"{\"test\":{\"dtype\":\"I32\",\"shape\":[2,0],\"data_offsets\":[0, 0]}}", 0, 1}, /* test_zero_sized_tensor */
        {"{}\r \t\n", 0, 0},                                                               /* test_whitespace_padded_header */
        {" \t\n{}", 0, 0},                                                                 /* leading JSON whitespace */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t size;
        size_t header_bytes = strlen(cases[i].header);
        uint8_t *file = make_raw(header_bytes, cases[i].header, header_bytes, zeros, cases[i].data_size, &size);
        qref_safetensors st;
        qref_error err = {0};
        qref_status status = parse_bytes(file, size, &st, &err);
        if (status != QREF_OK)
            print_error("case %zu: %s\n", i, err.message);
        assert_int_equal(status, QREF_OK);
        assert_int_equal(st.tensors.count, cases[i].tensors);
        if (cases[i].tensors == 1) {
            assert_string_equal(st.tensors.items[0].name, "test");
            assert_int_equal(st.tensors.items[0].dtype, QREF_DTYPE_I32);
            assert_int_equal(st.tensors.items[0].nbytes, cases[i].data_size);
        }
        qref_safetensors_free(&st);
        free(file);
    }
}

static void reference_vectors_rejected(void **state)
{
    (void)state;
    uint8_t zeros[64] = {0};
    const char *test_header = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    size_t size;
    qref_safetensors st;
    qref_error err = {0};

    /* test_header_too_small: an empty file. */
    test_assert_error(parse_bytes(zeros, 0, &st, &err), &err, QREF_ERR_INVALID, "file is 0 bytes, expected at least 8");

    /* test_header_too_large: length bytes 3c 00 00 00 00 ff ff ff. */
    uint8_t *file = make_raw(0xffffff000000003cull, test_header, 60, zeros, 16, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "exceeds the limit of 100000000 bytes");
    free(file);

    /* test_invalid_header_length: a length of 60 and nothing after it. */
    file = make_raw(60, "", 0, NULL, 0, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "runs past the end of the file");
    free(file);

    /* test_invalid_header_non_utf8 and test_invalid_header_not_json. */
    file = make_raw(1, "\xff", 1, NULL, 0, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "invalid JSON");
    free(file);
    file = make_raw(1, "{", 1, NULL, 0, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "invalid JSON");
    free(file);

    /* test_metadata_incomplete_buffer: polyglot bytes after the data, then 2 bytes missing. */
    file = make_raw(60, test_header, 60, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0extra_bogus_data_for_polyglot_file", 50, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "34 trailing bytes after the last tensor");
    free(file);
    file = make_raw(60, test_header, 60, zeros, 14, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "run past the end of the data buffer");
    free(file);

    /* test_invalid_info: [2,2] I32 with data_offsets [0, 4]. */
    const char *info = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0, 4]}}";
    file = make_raw(strlen(info), info, strlen(info), zeros, 4, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "span 4 bytes, but shape [2, 2]");
    free(file);

    /* test_validation_overflow: a dimension above INT64_MAX, then numel x 4 overflowing. */
    const char *overflow1 = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,18446744073709551614],\"data_offsets\":[0,16]}}";
    file = make_raw(strlen(overflow1), overflow1, strlen(overflow1), zeros, 16, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID,
                 "shape[1]: found 18446744073709551614 (a number)");
    free(file);
    const char *overflow2 = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,9223372036854775807],\"data_offsets\":[0,16]}}";
    file = make_raw(strlen(overflow2), overflow2, strlen(overflow2), zeros, 16, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "overflows 64 bits");
    free(file);

    /* test_json_attack: ten tensors all at [0, 16]. */
    char attack[1024] = "{";
    for (int i = 0; i < 10; i++)
        snprintf(attack + strlen(attack), sizeof attack - strlen(attack),
                 "%s\"weight_%d\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}", i ? "," : "", i);
    strcat(attack, "}");
    file = make_raw(strlen(attack), attack, strlen(attack), zeros, 16, &size);
    test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, "overlap tensor");
    free(file);
}

/* ---- Malformed corpus from a fixed seed -------------------------------------------------- */

#define CORPUS_SEED 0x5afe7e45u
#define CORPUS_TENSORS 5

typedef struct case_tensor {
    char name[64];
    char dtype[16];
    int ndim;
    int64_t shape[4];
    uint64_t begin, end;
} case_tensor;

typedef struct case_file {
    case_tensor tensors[CORPUS_TENSORS];
    size_t count;
    uint64_t data_size;
    const char *metadata; /* raw JSON value of "__metadata__", or NULL */
} case_file;

/* A valid layout: seeded dtypes and shapes, tensors back to back from offset 0. */
static void make_base(case_file *f)
{
    static const struct {
        const char *name;
        size_t size;
    } dtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U8", 1}, {"I64", 8}, {"F64", 8}};
    test_rng rng = {CORPUS_SEED};
    memset(f, 0, sizeof *f);
    f->count = CORPUS_TENSORS;
    f->metadata = "{\"format\":\"pt\"}";
    uint64_t offset = 0;
    for (size_t i = 0; i < f->count; i++) {
        case_tensor *t = &f->tensors[i];
        size_t d = test_rng_next(&rng) % (sizeof dtypes / sizeof dtypes[0]);
        snprintf(t->name, sizeof t->name, "layers.%zu.weight", i);
        snprintf(t->dtype, sizeof t->dtype, "%s", dtypes[d].name);
        t->ndim = 1 + (int)(test_rng_next(&rng) % 3);
        uint64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) {
            t->shape[k] = 1 + (int64_t)(test_rng_next(&rng) % 6);
            numel *= (uint64_t)t->shape[k];
        }
        t->begin = offset;
        t->end = offset + numel * dtypes[d].size;
        offset = t->end;
    }
    f->data_size = offset;
}

/* Renders the header JSON, tensors in reverse order to show that key order does not matter. */
static char *render_header(const case_file *f)
{
    char *text = malloc(8192);
    assert_non_null(text);
    size_t used = (size_t)snprintf(text, 8192, "{");
    if (f->metadata != NULL)
        used += (size_t)snprintf(text + used, 8192 - used, "\"__metadata__\":%s,", f->metadata);
    for (size_t j = 0; j < f->count; j++) {
        const case_tensor *t = &f->tensors[f->count - 1 - j];
        used += (size_t)snprintf(text + used, 8192 - used, "\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype);
        for (int k = 0; k < t->ndim; k++)
            used += (size_t)snprintf(text + used, 8192 - used, "%s%lld", k ? "," : "", (long long)t->shape[k]);
        used += (size_t)snprintf(text + used, 8192 - used, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}%s",
                                 t->begin, t->end, j + 1 < f->count ? "," : "");
    }
    snprintf(text + used, 8192 - used, "}");
    return text;
}

/* Builds the file: the true header length, the header, then data_size seeded bytes. */
static uint8_t *render_file(const char *header, uint64_t data_size, size_t *size)
{
    uint8_t *data = malloc(data_size + 1);
    assert_non_null(data);
    test_rng rng = {CORPUS_SEED + 1};
    for (uint64_t i = 0; i < data_size; i++)
        data[i] = (uint8_t)test_rng_next(&rng);
    uint8_t *file = make_raw(strlen(header), header, strlen(header), data, data_size, size);
    free(data);
    return file;
}

static void assert_case(const case_file *f, qref_status expected, const char *phrase)
{
    char *header = render_header(f);
    size_t size;
    uint8_t *file = render_file(header, f->data_size, &size);
    qref_safetensors st;
    qref_error err = {0};
    qref_status status = parse_bytes(file, size, &st, &err);
    if (status == QREF_OK) {
        print_error("accepted: %s\n", header);
        qref_safetensors_free(&st);
    }
    test_assert_error(status, &err, expected, phrase);
    free(file);
    free(header);
}

static void assert_raw_header_case(const char *header, uint64_t data_size, qref_status expected, const char *phrase)
{
    size_t size;
    uint8_t *file = render_file(header, data_size, &size);
    qref_safetensors st;
    qref_error err = {0};
    test_assert_error(parse_bytes(file, size, &st, &err), &err, expected, phrase);
    free(file);
}

static void corpus_base_is_valid(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    char *header = render_header(&f);
    size_t size;
    uint8_t *file = render_file(header, f.data_size, &size);
    qref_safetensors st;
    qref_error err = {0};
    assert_int_equal(parse_bytes(file, size, &st, &err), QREF_OK);
    assert_int_equal(st.tensors.count, CORPUS_TENSORS);
    for (size_t i = 0; i < f.count; i++) {
        const qref_tensor *t = qref_tensor_set_find(&st.tensors, f.tensors[i].name);
        assert_non_null(t);
        assert_string_equal(qref_dtype_name(t->dtype), f.tensors[i].dtype);
        assert_ptr_equal(t->data, file + 8 + strlen(header) + f.tensors[i].begin);
        assert_int_equal(t->nbytes, f.tensors[i].end - f.tensors[i].begin);
    }
    qref_safetensors_free(&st);
    free(file);
    free(header);
}

static void corpus_truncated_file(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    char *header = render_header(&f);
    size_t size;
    uint8_t *file = render_file(header, f.data_size, &size);
    size_t n = strlen(header);
    static const char *too_small = "expected at least 8";
    static const char *header_cut = "runs past the end of the file";
    static const char *data_cut = "run past the end of the data buffer";
    const struct {
        size_t cut;
        const char *phrase;
    } cuts[] = {
        {0, too_small},         {3, too_small},           {7, too_small},
        {8, header_cut},        {8 + n / 2, header_cut},  {8 + n - 1, header_cut},
        {8 + n, data_cut},      {8 + n + 1, data_cut},    {size - 1, data_cut},
    };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        qref_safetensors st;
        qref_error err = {0};
        test_assert_error(parse_bytes(file, cuts[i].cut, &st, &err), &err, QREF_ERR_INVALID, cuts[i].phrase);
    }
    free(file);
    free(header);
}

static void corpus_offsets_past_end(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    case_tensor *last = &f.tensors[f.count - 1];
    uint64_t span = last->end - last->begin;
    last->begin = f.data_size;
    last->end = f.data_size + span;
    assert_case(&f, QREF_ERR_INVALID, "run past the end of the data buffer");
}

static void corpus_overlapping_tensors(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    f.tensors[1].begin -= 1;
    f.tensors[1].end -= 1;
    char phrase[320];
    snprintf(phrase, sizeof phrase, "tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64 "] overlap tensor \"%s\"",
             f.tensors[1].name, f.tensors[1].begin, f.tensors[1].end, f.tensors[0].name);
    assert_case(&f, QREF_ERR_INVALID, phrase);
}

static void corpus_gap_between_tensors(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    uint64_t gap_start = f.tensors[2].begin;
    for (size_t i = 2; i < f.count; i++) {
        f.tensors[i].begin += 8;
        f.tensors[i].end += 8;
    }
    f.data_size += 8;
    char phrase[160];
    snprintf(phrase, sizeof phrase, "gap in the data buffer: bytes [%" PRIu64 ", %" PRIu64 ")", gap_start,
             gap_start + 8);
    assert_case(&f, QREF_ERR_INVALID, phrase);

    /* A gap before the first tensor. */
    make_base(&f);
    for (size_t i = 0; i < f.count; i++) {
        f.tensors[i].begin += 16;
        f.tensors[i].end += 16;
    }
    f.data_size += 16;
    assert_case(&f, QREF_ERR_INVALID, "bytes [0, 16) belong to no tensor");
}

static void corpus_trailing_bytes(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    f.data_size += 16;
    assert_case(&f, QREF_ERR_INVALID, "16 trailing bytes after the last tensor");
}

static void corpus_header_length_field(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    char *header = render_header(&f);
    size_t size;
    uint8_t *file = render_file(header, f.data_size, &size);
    const struct {
        uint64_t length;
        const char *phrase;
    } cases[] = {
        {1ull << 63, "header length 9223372036854775808 exceeds the limit of 100000000 bytes"},
        {UINT64_MAX - 7, "header length 18446744073709551608 exceeds the limit"},
        {QREF_SAFETENSORS_MAX_HEADER + 1, "exceeds the limit"},
        {(uint64_t)size, "runs past the end of the file"},
        {(uint64_t)size - 7, "runs past the end of the file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qref_store_u64(file, cases[i].length);
        qref_safetensors st;
        qref_error err = {0};
        test_assert_error(parse_bytes(file, size, &st, &err), &err, QREF_ERR_INVALID, cases[i].phrase);
    }
    free(file);
    free(header);
}

static void corpus_header_not_object(void **state)
{
    (void)state;
    assert_raw_header_case("[]", 0, QREF_ERR_INVALID, "the header is an array, expected a JSON object");
    assert_raw_header_case("\"x\"", 0, QREF_ERR_INVALID, "the header is a string, expected a JSON object");
    assert_raw_header_case("{} {}", 0, QREF_ERR_INVALID, "only whitespace may follow it");
    assert_raw_header_case("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}\xff", 1, QREF_ERR_INVALID,
                           "invalid JSON");
    assert_raw_header_case("{\"caf\xc3\x28\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                           QREF_ERR_INVALID, "invalid UTF-8");
}

static void corpus_duplicate_key(void **state)
{
    (void)state;
    assert_raw_header_case("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                           "\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                           8, QREF_ERR_INVALID, "duplicate key \"w\" at $.w");
    assert_raw_header_case("{\"w\":{\"dtype\":\"U8\",\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                           QREF_ERR_INVALID, "duplicate key \"dtype\" at $.w.dtype");
}

static void corpus_metadata_not_string_map(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    f.metadata = "[\"pt\"]";
    assert_case(&f, QREF_ERR_INVALID, "\"__metadata__\" is an array, expected an object mapping strings to strings");
    f.metadata = "{\"format\":1}";
    assert_case(&f, QREF_ERR_INVALID, "\"__metadata__\" key \"format\": found 1 (a number), expected a string");
    f.metadata = "{\"nested\":{\"a\":\"b\"}}";
    assert_case(&f, QREF_ERR_INVALID, "found an object, expected a string");
}

static void corpus_shape_overflow(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    case_tensor *t = &f.tensors[0];
    snprintf(t->dtype, sizeof t->dtype, "F32");
    t->ndim = 2;
    t->shape[0] = 1ll << 40;
    t->shape[1] = 1ll << 40;
    assert_case(&f, QREF_ERR_INVALID, "shape [1099511627776, 1099511627776] with dtype F32 overflows 64 bits");
}

static void corpus_span_mismatch(void **state)
{
    (void)state;
    assert_raw_header_case("{\"w\":{\"dtype\":\"F32\",\"shape\":[1000,1000],\"data_offsets\":[0,4]}}", 4,
                           QREF_ERR_INVALID, "span 4 bytes, but shape [1000, 1000] with dtype F32 needs 4000000 bytes");
}

static void corpus_dtypes(void **state)
{
    (void)state;
    case_file f;
    make_base(&f);
    snprintf(f.tensors[2].dtype, sizeof f.tensors[2].dtype, "Q4");
    assert_case(&f, QREF_ERR_INVALID, "unknown dtype \"Q4\"");
    static const char *const unsupported[] = {"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "C64"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        make_base(&f);
        snprintf(f.tensors[2].dtype, sizeof f.tensors[2].dtype, "%s", unsupported[i]);
        char phrase[96];
        snprintf(phrase, sizeof phrase, "dtype %s is defined by safetensors but not supported", unsupported[i]);
        assert_case(&f, QREF_ERR_UNSUPPORTED, phrase);
    }
    assert_raw_header_case("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QREF_ERR_INVALID,
                           "unknown dtype \"f32\"");
    assert_raw_header_case("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QREF_ERR_INVALID,
                           "dtype: found 4 (a number), expected a string");
}

static void corpus_entry_structure(void **state)
{
    (void)state;
    const struct {
        const char *header;
        uint64_t data_size;
        const char *phrase;
    } cases[] = {
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"extra\":1}}", 4,
         "unexpected key \"extra\", expected only dtype, shape and data_offsets"},
        {"{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,4]}}", 4, "tensor \"w\": missing key \"shape\""},
        {"{\"w\":{\"shape\":[4],\"data_offsets\":[0,4]}}", 4, "tensor \"w\": missing key \"dtype\""},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[4]}}", 4, "tensor \"w\": missing key \"data_offsets\""},
        {"{\"w\":[1,2]}", 0, "tensor \"w\" is an array, expected an object"},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
         "shape has 9 dimensions, the maximum is 8"},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, "shape[0]: found -1 (a number)"},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2]}}", 2, "shape[0]: found 2.0 (a number)"},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, "shape is a number, expected an array"},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4,8]}}", 8,
         "data_offsets is an array of 3 elements, expected an array of exactly two integers"},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[\"0\",4]}}", 4, "data_offsets[0]: found \"0\""},
        {"{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
         "data_offsets [8, 4] has begin after end"},
        {"{\"\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, "a tensor has an empty name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_raw_header_case(cases[i].header, cases[i].data_size, QREF_ERR_INVALID, cases[i].phrase);

    /* A 1025-byte name is over the limit, and 1024 bytes is accepted. */
    case_file f;
    make_base(&f);
    f.count = 1;
    f.data_size = f.tensors[0].end;
    char *header = render_header(&f);
    for (size_t length = 1024; length <= 1025; length++) {
        char *long_header = malloc(strlen(header) + 2048);
        assert_non_null(long_header);
        char *name = malloc(length + 1);
        memset(name, 'n', length);
        name[length] = '\0';
        const char *after_name = strstr(header, "\":{\"dtype");
        const char *before_name = strstr(header, "layers.0.weight");
        sprintf(long_header, "%.*s%s%s", (int)(before_name - header), header, name, after_name);
        size_t size;
        uint8_t *file = render_file(long_header, f.data_size, &size);
        qref_safetensors st;
        qref_error err = {0};
        qref_status status = parse_bytes(file, size, &st, &err);
        if (length == 1024) {
            assert_int_equal(status, QREF_OK);
            qref_safetensors_free(&st);
        } else {
            test_assert_error(status, &err, QREF_ERR_INVALID, "is 1025 bytes long, the limit is 1024 bytes");
        }
        free(file);
        free(name);
        free(long_header);
    }
    free(header);
}

/* ---- Writer ------------------------------------------------------------------------------- */

static uint8_t *write_and_read(const char *name, const qref_safetensors_entry *entries, size_t count,
                               const qref_safetensors_meta *metadata, size_t meta_count, size_t *size)
{
    const char *path = test_tmp_path(name);
    qref_error err = {0};
    qref_status status = qref_safetensors_write(path, entries, count, metadata, meta_count, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    return (uint8_t *)test_read_file(test_tmp_path(name), size);
}

/* Bytes of tensor.rs test_serialization: "attn.0", F32 [1, 2, 3] holding 0, 1, ..., 5. */
static void writer_matches_reference_serialization(void **state)
{
    (void)state;
    static const uint8_t expected[] = {
        64,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,  58,  123, 34,  100,
        116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,  58,  91,
        49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115, 34,
        58,  91,  48,  44,  50,  52,  93,  125, 125, 0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,
        0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64,
    };
    static const float values[6] = {0, 1, 2, 3, 4, 5};
    qref_safetensors_entry entry = {.name = "attn.0", .dtype = QREF_DTYPE_F32, .ndim = 3, .shape = {1, 2, 3},
                                    .data = values};
    size_t size;
    uint8_t *file = write_and_read("reference_serialization.safetensors", &entry, 1, NULL, 0, &size);
    assert_int_equal(size, sizeof expected);
    assert_memory_equal(file, expected, sizeof expected);
    free(file);

    /* test_serialization_forced_alignement: "attn0", [1, 1, 2, 3], padded with 7 spaces to N = 72. */
    entry.name = "attn0";
    entry.ndim = 4;
    entry.shape[0] = 1;
    entry.shape[1] = 1;
    entry.shape[2] = 2;
    entry.shape[3] = 3;
    file = write_and_read("reference_alignment.safetensors", &entry, 1, NULL, 0, &size);
    assert_int_equal(size, 8 + 72 + 24);
    assert_int_equal(qref_load_u64(file), 72);
    assert_memory_equal(file + 8, "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ",
                        72);
    assert_memory_equal(file + 80, values, 24);
    free(file);
}

/* tensor.rs test_empty: no tensors, without and with {"framework": "pt"} metadata. */
static void writer_matches_reference_empty(void **state)
{
    (void)state;
    static const uint8_t empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    static const uint8_t with_metadata[] = {
        40,  0,   0,   0,   0,   0,   0,   0,  123, 34,  95,  95,  109, 101, 116, 97, 100,
        97,  116, 97,  95,  95,  34,  58,  123, 34,  102, 114, 97,  109, 101, 119, 111, 114,
        107, 34,  58,  34,  112, 116, 34,  125, 125, 32,  32,  32,  32,  32,
    };
    size_t size;
    uint8_t *file = write_and_read("reference_empty.safetensors", NULL, 0, NULL, 0, &size);
    assert_int_equal(size, sizeof empty);
    assert_memory_equal(file, empty, sizeof empty);
    free(file);

    qref_safetensors_meta meta = {"framework", "pt"};
    file = write_and_read("reference_empty_metadata.safetensors", NULL, 0, &meta, 1, &size);
    assert_int_equal(size, sizeof with_metadata);
    assert_memory_equal(file, with_metadata, sizeof with_metadata);
    free(file);
}

/* Seeded tensors of every dtype, scalars and empty ones included, survive write + parse. */
static void writer_round_trip(void **state)
{
    (void)state;
    test_rng rng = {0x0007ea5eull};
    qref_safetensors_entry entries[QREF_DTYPE_COUNT + 2];
    uint8_t *buffers[QREF_DTYPE_COUNT + 2];
    char names[QREF_DTYPE_COUNT + 2][32];
    size_t count = 0;
    for (int d = 0; d < QREF_DTYPE_COUNT + 2; d++) {
        qref_safetensors_entry *e = &entries[count];
        memset(e, 0, sizeof *e);
        snprintf(names[count], sizeof names[count], "t%02d.\"quoted\\name\"", (int)(test_rng_next(&rng) % 100));
        names[count][0] = (char)('a' + d); /* unique first letter, so names never repeat */
        e->name = names[count];
        e->dtype = (qref_dtype)(d % QREF_DTYPE_COUNT);
        if (d == QREF_DTYPE_COUNT) {
            e->ndim = 0; /* a scalar: one element */
        } else if (d == QREF_DTYPE_COUNT + 1) {
            e->ndim = 2; /* an empty tensor */
            e->shape[0] = 3;
            e->shape[1] = 0;
        } else {
            e->ndim = 1 + (int)(test_rng_next(&rng) % 3);
            for (int k = 0; k < e->ndim; k++)
                e->shape[k] = 1 + (int64_t)(test_rng_next(&rng) % 7);
        }
        size_t numel = 1;
        for (int k = 0; k < e->ndim; k++)
            numel *= (size_t)e->shape[k];
        size_t nbytes = numel * qref_dtype_size(e->dtype);
        buffers[count] = malloc(nbytes + 1);
        for (size_t b = 0; b < nbytes; b++)
            buffers[count][b] = (uint8_t)test_rng_next(&rng);
        e->data = buffers[count];
        count++;
    }
    qref_safetensors_meta metadata[] = {{"format", "pt"}, {"note", "quote \" backslash \\ newline \n caf\xc3\xa9"}};

    size_t size;
    uint8_t *file = write_and_read("round_trip.safetensors", entries, count, metadata, 2, &size);
    qref_safetensors st;
    qref_error err = {0};
    qref_status status = parse_bytes(file, size, &st, &err);
    if (status != QREF_OK)
        print_error("%s\n", err.message);
    assert_int_equal(status, QREF_OK);
    assert_int_equal(st.header_size % 8, 0);
    assert_int_equal(st.tensors.count, count);
    for (size_t i = 0; i < count; i++) {
        const qref_tensor *t = qref_tensor_set_find(&st.tensors, entries[i].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, entries[i].dtype);
        assert_int_equal(t->ndim, entries[i].ndim);
        for (int k = 0; k < t->ndim; k++)
            assert_int_equal(t->shape[k], entries[i].shape[k]);
        if (t->nbytes > 0)
            assert_memory_equal(t->data, entries[i].data, t->nbytes);
    }
    assert_int_equal(st.metadata_count, 2);
    assert_string_equal(st.metadata[1].key, "note");
    assert_string_equal(st.metadata[1].value, metadata[1].value);
    qref_safetensors_free(&st);
    free(file);
    for (size_t i = 0; i < count; i++)
        free(buffers[i]);
}

static void writer_rejects_bad_entries(void **state)
{
    (void)state;
    static const uint8_t bytes[16] = {0};
    qref_safetensors_entry entries[2] = {
        {.name = "w", .dtype = QREF_DTYPE_U8, .ndim = 1, .shape = {4}, .data = bytes},
        {.name = "w", .dtype = QREF_DTYPE_U8, .ndim = 1, .shape = {4}, .data = bytes},
    };
    const char *path = test_tmp_path("rejected.safetensors");
    qref_error err = {0};
    test_assert_error(qref_safetensors_write(path, entries, 2, NULL, 0, &err), &err, QREF_ERR_INVALID,
                 "tensor name \"w\" is given twice");
    entries[1].name = "__metadata__";
    test_assert_error(qref_safetensors_write(path, entries, 2, NULL, 0, &err), &err, QREF_ERR_INVALID,
                 "\"__metadata__\" is reserved");
    entries[1].name = "bad\xff";
    test_assert_error(qref_safetensors_write(path, entries, 2, NULL, 0, &err), &err, QREF_ERR_INVALID, "not valid UTF-8");
    entries[1].name = "v";
    entries[1].ndim = 9;
    test_assert_error(qref_safetensors_write(path, entries, 2, NULL, 0, &err), &err, QREF_ERR_INVALID,
                 "9 dimensions, expected 0 to 8");
    qref_safetensors_meta meta[2] = {{"k", "a"}, {"k", "b"}};
    test_assert_error(qref_safetensors_write(path, entries, 1, meta, 2, &err), &err, QREF_ERR_INVALID,
                 "metadata key \"k\" is given twice");
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
}

/* A failed rename (the target is a folder) leaves neither the target nor a temporary file. */
static void writer_failure_leaves_no_temporary(void **state)
{
    (void)state;
    const char *target = test_tmp_path("writer_target_is_folder");
    mkdir(target, 0755);
    static const uint8_t bytes[4] = {1, 2, 3, 4};
    qref_safetensors_entry entry = {.name = "w", .dtype = QREF_DTYPE_U8, .ndim = 1, .shape = {4}, .data = bytes};
    qref_error err = {0};
    test_assert_error(qref_safetensors_write(target, &entry, 1, NULL, 0, &err), &err, QREF_ERR_IO,
                 "exists and is not a regular file");

    DIR *dir = opendir(test_tmp_path(""));
    assert_non_null(dir);
    struct dirent *dirent;
    while ((dirent = readdir(dir)) != NULL)
        assert_null(strstr(dirent->d_name, "writer_target_is_folder.tmp."));
    closedir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixture_stories260k_tensors),
        cmocka_unit_test(fixture_synth256_tensors),
        cmocka_unit_test(fixture_autogptq_tensors),
        cmocka_unit_test(reference_vectors_accepted),
        cmocka_unit_test(reference_vectors_rejected),
        cmocka_unit_test(corpus_base_is_valid),
        cmocka_unit_test(corpus_truncated_file),
        cmocka_unit_test(corpus_offsets_past_end),
        cmocka_unit_test(corpus_overlapping_tensors),
        cmocka_unit_test(corpus_gap_between_tensors),
        cmocka_unit_test(corpus_trailing_bytes),
        cmocka_unit_test(corpus_header_length_field),
        cmocka_unit_test(corpus_header_not_object),
        cmocka_unit_test(corpus_duplicate_key),
        cmocka_unit_test(corpus_metadata_not_string_map),
        cmocka_unit_test(corpus_shape_overflow),
        cmocka_unit_test(corpus_span_mismatch),
        cmocka_unit_test(corpus_dtypes),
        cmocka_unit_test(corpus_entry_structure),
        cmocka_unit_test(writer_matches_reference_serialization),
        cmocka_unit_test(writer_matches_reference_empty),
        cmocka_unit_test(writer_round_trip),
        cmocka_unit_test(writer_rejects_bad_entries),
        cmocka_unit_test(writer_failure_leaves_no_temporary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
