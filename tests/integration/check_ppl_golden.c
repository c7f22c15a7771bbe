/*
 * Compares the output of `qconform eval --json` with one llama.cpp value of
 * fixtures/goldens/perplexity.json.
 *
 *   check_ppl_golden EVAL_JSON GOLDEN_JSON MODEL
 *
 * MODEL is the golden entry's "model" field. The perplexity and its "+/-" (ppl_stderr, the
 * golden's "stderr") must match within the entry's tolerance_rel, and the run must have used
 * the entry's ctx and chunks under the llamacpp protocol. With --tokens N, the token count must
 * be N. Exits 0 when everything matches, 1 on a mismatch, 2 on unreadable input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static cJSON *read_json(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "check_ppl_golden: cannot open %s\n", path);
        return NULL;
    }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    size_t n = text != NULL ? fread(text, 1, (size_t)size, file) : 0;
    fclose(file);
    if (text == NULL || n != (size_t)size) {
        free(text);
        fprintf(stderr, "check_ppl_golden: cannot read %s\n", path);
        return NULL;
    }
    text[size] = '\0';
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (json == NULL)
        fprintf(stderr, "check_ppl_golden: %s is not JSON\n", path);
    return json;
}

static double number(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

/* Prints and counts a failed comparison of got against expected within a relative tolerance. */
static int check_relative(const char *what, double got, double expected, double tolerance)
{
    double relative = fabs(got - expected) / fabs(expected);
    printf("%s: %.6f, llama.cpp %.6f, relative difference %.3g (tolerance %g)\n", what, got, expected, relative,
           tolerance);
    return relative <= tolerance ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 6 && strcmp(argv[4], "--tokens") == 0)) {
        fprintf(stderr, "usage: check_ppl_golden EVAL_JSON GOLDEN_JSON MODEL [--tokens N]\n");
        return 2;
    }
    cJSON *eval = read_json(argv[1]);
    cJSON *golden = read_json(argv[2]);
    if (eval == NULL || golden == NULL)
        return 2;

    const cJSON *entry = NULL, *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(golden, "values"))
    {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(item, "model");
        if (cJSON_IsString(model) && strcmp(model->valuestring, argv[3]) == 0)
            entry = item;
    }
    if (entry == NULL) {
        fprintf(stderr, "check_ppl_golden: no value for model \"%s\" in %s\n", argv[3], argv[2]);
        return 2;
    }

    int failures = 0;
    const cJSON *protocol = cJSON_GetObjectItemCaseSensitive(eval, "protocol");
    if (!cJSON_IsString(protocol) || strcmp(protocol->valuestring, "llamacpp") != 0) {
        printf("protocol is not llamacpp\n");
        failures++;
    }
    if (number(eval, "seqlen") != number(entry, "ctx") || number(eval, "windows_evaluated") != number(entry, "chunks")) {
        printf("seqlen %g and windows_evaluated %g, expected ctx %g and chunks %g\n", number(eval, "seqlen"),
               number(eval, "windows_evaluated"), number(entry, "ctx"), number(entry, "chunks"));
        failures++;
    }
    if (argc == 6 && number(eval, "tokens") != atof(argv[5])) {
        printf("tokens %g, expected %s\n", number(eval, "tokens"), argv[5]);
        failures++;
    }
    double tolerance = number(entry, "tolerance_rel");
    failures += check_relative("ppl", number(eval, "ppl"), number(entry, "ppl"), tolerance);
    failures += check_relative("ppl_stderr", number(eval, "ppl_stderr"), number(entry, "stderr"), tolerance);
    cJSON_Delete(eval);
    cJSON_Delete(golden);
    return failures == 0 ? 0 : 1;
}
