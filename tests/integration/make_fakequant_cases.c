/*
 * make_fakequant_cases: writes the fake-quantized snapshots that the fakequant.partial and
 * fakequant.mixed findings describe, for the "integration;fakequant" tests.
 *
 *   make_fakequant_cases BASE OTHER REF OUT_DIR
 *
 * BASE and OTHER are F16 fake-quantized snapshots of REF written by `qconform quantize
 * --format fake` with different bits or group sizes. Each case copies BASE (config.json,
 * tokenizer.model and every tensor) and replaces the weight of one linear, drawn by SplitMix64
 * from CASES_SEED among the 14 linears of synth256's two layers:
 *
 *   partial   the linear from REF, rounded to F16: full precision, on no grid
 *   mixed     the linear from OTHER: on OTHER's grid
 *
 * The replaced linear is printed, one "case module" line per case.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/qref_dtype.h"
#include "io/qref_blob.h"
#include "io/qref_safetensors.h"
#include "model/qref_llama.h"

#define CASES_SEED 0x66616b6571756e74ull
#define PATH_SIZE 4096
#define LAYERS 2

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fputs("make_fakequant_cases: ", stderr);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    exit(1);
}

/* SplitMix64 (Steele, Lea and Flood, 2014). */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Writes "dir/name" into out (PATH_SIZE bytes), failing when it does not fit. */
static char *join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", dir, name);
    if (n < 0 || n >= PATH_SIZE)
        fail("path %s/%s is too long", dir, name);
    return out;
}

/* A snapshot's model.safetensors, mapped and parsed. */
typedef struct loaded {
    qref_blob blob;
    qref_safetensors st;
} loaded;

static void load(const char *dir, loaded *out)
{
    char path[PATH_SIZE];
    qref_error err = {0};
    if (qref_blob_map_file(join(path, dir, "model.safetensors"), &out->blob, &err) != QREF_OK ||
        qref_safetensors_parse(path, out->blob.data, out->blob.size, &out->st, &err) != QREF_OK)
        fail("%s", err.message);
}

static const qref_tensor *require(const loaded *model, const char *name)
{
    const qref_tensor *tensor = qref_tensor_set_find(&model->st.tensors, name);
    if (tensor == NULL)
        fail("%s: no tensor %s", model->st.display, name);
    return tensor;
}

/* Copies the file name from src to dst, when src has it. */
static void copy_file(const char *src, const char *dst, const char *name)
{
    char from[PATH_SIZE], to[PATH_SIZE];
    struct stat info;
    if (stat(join(from, src, name), &info) != 0)
        return;
    char *data = NULL;
    size_t size = 0;
    qref_error err = {0};
    if (qref_file_read_all(from, 64u << 20, &data, &size, &err) != QREF_OK ||
        qref_file_write_atomic(join(to, dst, name), data, size, &err) != QREF_OK)
        fail("%s", err.message);
    free(data);
}

/* Writes OUT_DIR/name: BASE with the tensor `weight` replaced by replacement (F16 values). */
static void write_case(const char *base_dir, const loaded *base, const char *out_dir, const char *name,
                       const char *weight, const uint8_t *replacement)
{
    char dir[PATH_SIZE], path[PATH_SIZE];
    join(dir, out_dir, name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        fail("%s: cannot create the folder: %s", dir, strerror(errno));
    copy_file(base_dir, dir, "config.json");
    copy_file(base_dir, dir, "tokenizer.model");

    size_t count = base->st.tensors.count;
    qref_safetensors_entry *entries = calloc(count, sizeof *entries);
    if (entries == NULL)
        fail("out of memory");
    for (size_t i = 0; i < count; i++) {
        const qref_tensor *t = &base->st.tensors.items[i];
        entries[i] = (qref_safetensors_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(entries[i].shape, t->shape, sizeof entries[i].shape);
        if (strcmp(t->name, weight) == 0)
            entries[i].data = replacement;
    }
    qref_error err = {0};
    const qref_safetensors_meta metadata[] = {{"format", "pt"}};
    if (qref_safetensors_write(join(path, dir, "model.safetensors"), entries, count, metadata, 1, &err) != QREF_OK)
        fail("%s", err.message);
    free(entries);
    printf("%s %.*s\n", name, (int)(strlen(weight) - strlen(".weight")), weight);
}

/* The name of linear index n (0 .. LAYERS * 7 - 1) drawn from the stream. */
static void draw_linear(uint64_t *state, char *name, size_t size)
{
    int n = (int)(rng_next(state) % (LAYERS * QREF_LLAMA_LINEAR_COUNT));
    char module[256];
    qref_llama_layer_tensor_name(module, sizeof module, n / QREF_LLAMA_LINEAR_COUNT,
                                 qref_llama_linear_names[n % QREF_LLAMA_LINEAR_COUNT]);
    snprintf(name, size, "%s.weight", module);
}

int main(int argc, char **argv)
{
    if (argc != 5)
        fail("usage: make_fakequant_cases BASE OTHER REF OUT_DIR");
    const char *base_dir = argv[1], *out = argv[4];
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        fail("%s: cannot create the folder: %s", out, strerror(errno));
    loaded base, other, ref;
    load(base_dir, &base);
    load(argv[2], &other);
    load(argv[3], &ref);
    uint64_t state = CASES_SEED;

    /* partial: REF's F32 weight rounded to F16 */
    char weight[300];
    draw_linear(&state, weight, sizeof weight);
    const qref_tensor *base_weight = require(&base, weight), *ref_weight = require(&ref, weight);
    if (base_weight->dtype != QREF_DTYPE_F16 || ref_weight->dtype != QREF_DTYPE_F32 ||
        base_weight->numel != ref_weight->numel)
        fail("%s: expected an F16 fake-quantized BASE and an F32 REF of equal shape", weight);
    uint8_t *halves = malloc(base_weight->nbytes);
    if (halves == NULL)
        fail("out of memory");
    for (uint64_t i = 0; i < ref_weight->numel; i++)
        qref_store_u16(halves + 2 * i, qref_f32_to_f16(qref_load_f32(ref_weight->data + 4 * i)));
    write_case(base_dir, &base, out, "partial", weight, halves);
    free(halves);

    /* mixed: OTHER's weight of another drawn linear */
    draw_linear(&state, weight, sizeof weight);
    const qref_tensor *other_weight = require(&other, weight);
    if (other_weight->dtype != QREF_DTYPE_F16 || other_weight->nbytes != require(&base, weight)->nbytes)
        fail("%s: expected an F16 OTHER of BASE's shape", weight);
    write_case(base_dir, &base, out, "mixed", weight, other_weight->data);

    qref_safetensors_free(&base.st);
    qref_safetensors_free(&other.st);
    qref_safetensors_free(&ref.st);
    qref_blob_free(&base.blob);
    qref_blob_free(&other.blob);
    qref_blob_free(&ref.blob);
    return 0;
}
