/*
 * Loaders of byte-level BPE tokenizers from a Hugging Face tokenizer.json (with its
 * tokenizer_config.json) and from Meta's tiktoken tokenizer.model. Both end in the same tables
 * (qref_bpe_build.h), so the two LLaMA-3 files encode every text to the same ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qref_json.h"
#include "model/qref_bpe.h"
#include "model/qref_bpe_build.h"

/* Label of a JSON member for messages: prefix["key"], the key shortened. */
static const char *member_label(const char *prefix, const char *key, char *buffer, size_t size)
{
    char quoted[128];
    snprintf(buffer, size, "%s[%s]", prefix, qref_bpe_quote(key, strlen(key), quoted, sizeof quoted));
    return buffer;
}

/* ------------------------------------------------------------------------------------------ */
/* tokenizer.json: the parts of the layout this module implements                             */
/* ------------------------------------------------------------------------------------------ */

/* True when object[key] is absent or null. */
static bool is_absent(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return item == NULL || cJSON_IsNull(item);
}

/* The string member key of object, or NULL when it is absent or not a string. */
static const char *string_member(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static bool bool_member_is(const cJSON *object, const char *key, bool expected)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsBool(item) && (cJSON_IsTrue(item) != 0) == expected;
}

/* Fails with UNSUPPORTED naming field and the value found. */
static qref_status unsupported(const char *display, const char *field, const cJSON *found, const char *expected,
                               qref_error *err)
{
    char described[160];
    return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s is %s; supported: %s", display, field,
                          found != NULL ? qref_json_describe(found, described, sizeof described) : "missing",
                          expected);
}

static const char PRE_TOKENIZER_LAYOUT[] =
    "the LLaMA-3 layout, a Sequence of a Split (pattern.Regex, behavior \"Isolated\", invert false) "
    "and a ByteLevel (add_prefix_space false, use_regex false)";

/* Checks pre_tokenizer against the LLaMA-3 layout and returns its regex. */
static qref_status hf_read_pre_tokenizer(const char *display, const cJSON *root, const char **pattern,
                                         qref_error *err)
{
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const char *type = string_member(pre, "type");
    if (!cJSON_IsObject(pre) || type == NULL || strcmp(type, "Sequence") != 0)
        return unsupported(display, "pre_tokenizer", pre, PRE_TOKENIZER_LAYOUT, err);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
    if (!cJSON_IsArray(steps) || cJSON_GetArraySize(steps) != 2)
        return unsupported(display, "pre_tokenizer.pretokenizers", steps, PRE_TOKENIZER_LAYOUT, err);

    const cJSON *split = cJSON_GetArrayItem(steps, 0);
    const char *split_type = string_member(split, "type");
    const char *behavior = string_member(split, "behavior");
    const cJSON *split_pattern = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const char *regex = string_member(split_pattern, "Regex");
    if (split_type == NULL || strcmp(split_type, "Split") != 0)
        return unsupported(display, "pre_tokenizer.pretokenizers[0]", split, PRE_TOKENIZER_LAYOUT, err);
    if (regex == NULL)
        return unsupported(display, "pre_tokenizer.pretokenizers[0].pattern", split_pattern,
                           "an object with a \"Regex\" string", err);
    if (behavior == NULL || strcmp(behavior, "Isolated") != 0)
        return unsupported(display, "pre_tokenizer.pretokenizers[0].behavior",
                           cJSON_GetObjectItemCaseSensitive(split, "behavior"), "\"Isolated\"", err);
    if (!is_absent(split, "invert") && !bool_member_is(split, "invert", false))
        return unsupported(display, "pre_tokenizer.pretokenizers[0].invert",
                           cJSON_GetObjectItemCaseSensitive(split, "invert"), "false", err);

    const cJSON *byte_level = cJSON_GetArrayItem(steps, 1);
    const char *byte_level_type = string_member(byte_level, "type");
    if (byte_level_type == NULL || strcmp(byte_level_type, "ByteLevel") != 0)
        return unsupported(display, "pre_tokenizer.pretokenizers[1]", byte_level, PRE_TOKENIZER_LAYOUT, err);
    if (!bool_member_is(byte_level, "add_prefix_space", false))
        return unsupported(display, "pre_tokenizer.pretokenizers[1].add_prefix_space",
                           cJSON_GetObjectItemCaseSensitive(byte_level, "add_prefix_space"), "false", err);
    if (!bool_member_is(byte_level, "use_regex", false))
        return unsupported(display, "pre_tokenizer.pretokenizers[1].use_regex",
                           cJSON_GetObjectItemCaseSensitive(byte_level, "use_regex"), "false", err);
    *pattern = regex;
    return QREF_OK;
}

/* Checks the model's options: plain byte-level BPE without dropout, prefixes or fallbacks. */
static qref_status hf_check_model(const char *display, const cJSON *model, bool *ignore_merges, qref_error *err)
{
    const char *type = string_member(model, "type");
    if (type == NULL || strcmp(type, "BPE") != 0)
        return unsupported(display, "model.type", cJSON_GetObjectItemCaseSensitive(model, "type"), "\"BPE\"", err);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout != NULL && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return unsupported(display, "model.dropout", dropout, "null (no BPE dropout)", err);
    if (!is_absent(model, "byte_fallback") && !bool_member_is(model, "byte_fallback", false))
        return unsupported(display, "model.byte_fallback", cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"),
                           "false", err);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *affix = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (affix != NULL && !cJSON_IsNull(affix) && !(cJSON_IsString(affix) && affix->valuestring[0] == '\0')) {
            char field[64];
            snprintf(field, sizeof field, "model.%s", affixes[i]);
            return unsupported(display, field, affix, "null", err);
        }
    }
    return qref_json_get_bool(display, model, "ignore_merges", false, false, ignore_merges, err);
}

/* Checks the parts that change ids but that LLaMA-3 leaves empty, and the decoder. */
static qref_status hf_check_layout(const char *display, const cJSON *root, qref_error *err)
{
    static const char *const empty[] = {"normalizer", "truncation", "padding"};
    for (int i = 0; i < 3; i++) {
        if (!is_absent(root, empty[i]))
            return unsupported(display, empty[i], cJSON_GetObjectItemCaseSensitive(root, empty[i]), "null", err);
    }
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *decoder_type = string_member(decoder, "type");
    if (!is_absent(root, "decoder") && (decoder_type == NULL || strcmp(decoder_type, "ByteLevel") != 0))
        return unsupported(display, "decoder", decoder, "null or a ByteLevel decoder", err);
    return QREF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* tokenizer.json: vocabulary, merges and added tokens                                       */
/* ------------------------------------------------------------------------------------------ */

static qref_status hf_define_vocab(qref_bpe *bpe, const char *display, const cJSON *vocab, int32_t id_capacity,
                                   char *scratch, qref_error *err)
{
    for (const cJSON *entry = vocab->child; entry != NULL; entry = entry->next) {
        char label[192];
        member_label("model.vocab", entry->string, label, sizeof label);
        int64_t id = 0;
        qref_status status = qref_json_item_int(display, label, entry, 0, id_capacity - 1, &id, err);
        if (status != QREF_OK)
            return status;
        size_t length = strlen(entry->string);
        if (length > QREF_BPE_MAX_TOKEN_BYTES)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: token of %zu bytes; expected at most %u", display,
                                  label, length, QREF_BPE_MAX_TOKEN_BYTES);
        size_t bad = 0;
        ptrdiff_t decoded = qref_bpe_byte_level_decode(entry->string, length, scratch, &bad);
        if (decoded < 0)
            return qref_error_set(err, QREF_ERR_UNSUPPORTED, "%s: %s: the character at byte %zu is outside the "
                                  "byte-level alphabet; only byte-level BPE vocabularies are supported", display,
                                  label, bad);
        status = qref_bpe_build_token(bpe, (int32_t)id, scratch, (size_t)decoded, QREF_BPE_TOKEN_NORMAL, true, label,
                                      err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* Splits merges[index] into its two byte-level tokens: "LEFT RIGHT" or ["LEFT", "RIGHT"]. */
static qref_status hf_merge_parts(const char *display, const cJSON *item, size_t index, const char *parts[2],
                                  size_t lengths[2], qref_error *err)
{
    char described[160];
    if (cJSON_IsString(item)) {
        /* huggingface/tokenizers splits on ' ' and wants exactly two parts */
        const char *text = item->valuestring;
        const char *space = strchr(text, ' ');
        if (space != NULL && strchr(space + 1, ' ') == NULL) {
            parts[0] = text, lengths[0] = (size_t)(space - text);
            parts[1] = space + 1, lengths[1] = strlen(space + 1);
            return QREF_OK;
        }
    } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 && cJSON_IsString(cJSON_GetArrayItem(item, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(item, 1))) {
        for (int p = 0; p < 2; p++) {
            parts[p] = cJSON_GetArrayItem(item, p)->valuestring;
            lengths[p] = strlen(parts[p]);
        }
        return QREF_OK;
    }
    return qref_error_set(err, QREF_ERR_INVALID, "%s: model.merges[%zu] is %s; expected \"LEFT RIGHT\" (one space) "
                          "or [\"LEFT\", \"RIGHT\"]", display, index,
                          qref_json_describe(item, described, sizeof described));
}

static qref_status hf_add_merges(qref_bpe *bpe, const char *display, const cJSON *merges, char *scratch,
                                 qref_error *err)
{
    size_t index = 0;
    for (const cJSON *item = merges->child; item != NULL; item = item->next, index++) {
        const char *parts[2] = {NULL, NULL};
        size_t lengths[2] = {0, 0};
        qref_status status = hf_merge_parts(display, item, index, parts, lengths, err);
        if (status != QREF_OK)
            return status;

        /* both parts and their concatenation must be vocabulary tokens (MergeTokenOutOfVocabulary) */
        int32_t ids[2];
        size_t joined = 0;
        for (int p = 0; p < 2; p++) {
            size_t bad = 0;
            ptrdiff_t decoded = lengths[p] <= QREF_BPE_MAX_TOKEN_BYTES
                                    ? qref_bpe_byte_level_decode(parts[p], lengths[p], scratch + joined, &bad)
                                    : -1;
            ids[p] = decoded > 0 ? qref_bpe_build_find(bpe, scratch + joined, (size_t)decoded) : -1;
            if (ids[p] < 0) {
                char quoted[128];
                return qref_error_set(err, QREF_ERR_INVALID, "%s: model.merges[%zu]: the token %s is not in "
                                      "model.vocab", display, index,
                                      qref_bpe_quote(parts[p], lengths[p], quoted, sizeof quoted));
            }
            joined += (size_t)decoded;
        }
        int32_t merged = qref_bpe_build_find(bpe, scratch, joined);
        if (merged < 0) {
            char left[128], right[128];
            return qref_error_set(err, QREF_ERR_INVALID, "%s: model.merges[%zu]: the merge of %s and %s is not in "
                                  "model.vocab", display, index,
                                  qref_bpe_quote(parts[0], lengths[0], left, sizeof left),
                                  qref_bpe_quote(parts[1], lengths[1], right, sizeof right));
        }
        status = qref_bpe_build_merge(bpe, ids[0], ids[1], merged, (uint32_t)index, err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* Reads a bool member with the AddedToken default when it is absent. */
static qref_status added_flag(const char *display, const cJSON *token, const char *key, bool fallback, bool *out,
                              qref_error *err)
{
    return qref_json_get_bool(display, token, key, false, fallback, out, err);
}

static qref_status hf_add_added_tokens(qref_bpe *bpe, const char *display, const cJSON *added_tokens,
                                       int32_t id_capacity, qref_error *err)
{
    size_t index = 0;
    for (const cJSON *token = added_tokens != NULL ? added_tokens->child : NULL; token != NULL;
         token = token->next, index++) {
        char label[64];
        snprintf(label, sizeof label, "added_tokens[%zu]", index);
        if (!cJSON_IsObject(token)) {
            char described[160];
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is %s; expected an object", display, label,
                                  qref_json_describe(token, described, sizeof described));
        }
        int64_t id = 0;
        const char *content = NULL;
        qref_status status = qref_json_get_int(display, token, "id", true, 0, 0, id_capacity - 1, &id, err);
        if (status == QREF_OK)
            status = qref_json_get_string(display, token, "content", true, NULL, &content, err);
        if (status != QREF_OK)
            return qref_error_prefix(err, "%s: ", label);

        /* AddedToken's serde defaults: special false, normalized true, the rest false */
        qref_bpe_added_flags flags = {0};
        status = added_flag(display, token, "special", false, &flags.special, err);
        if (status == QREF_OK)
            status = added_flag(display, token, "normalized", true, &flags.normalized, err);
        if (status == QREF_OK)
            status = added_flag(display, token, "lstrip", false, &flags.lstrip, err);
        if (status == QREF_OK)
            status = added_flag(display, token, "rstrip", false, &flags.rstrip, err);
        if (status == QREF_OK)
            status = added_flag(display, token, "single_word", false, &flags.single_word, err);
        if (status != QREF_OK)
            return qref_error_prefix(err, "%s: ", label);

        /* a token the model vocabulary already has must keep its id there */
        size_t length = strlen(content);
        int32_t in_vocab = length > 0 ? qref_bpe_build_find(bpe, content, length) : -1;
        if (in_vocab >= 0 && in_vocab != id) {
            char quoted[128];
            return qref_error_set(err, QREF_ERR_INVALID, "%s: %s: content %s has id %lld, but model.vocab gives it id "
                                  "%d", display, label, qref_bpe_quote(content, length, quoted, sizeof quoted),
                                  (long long)id, in_vocab);
        }
        qref_bpe_token_type type = flags.special ? QREF_BPE_TOKEN_CONTROL : QREF_BPE_TOKEN_USER_DEFINED;
        status = qref_bpe_build_token(bpe, (int32_t)id, content, length, type, false, label, err);
        if (status == QREF_OK)
            status = qref_bpe_build_added(bpe, (int32_t)id, &flags, label, err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* tokenizer.json: BOS and EOS                                                                */
/* ------------------------------------------------------------------------------------------ */

static const char TEMPLATE_LAYOUT[] = "at most one SpecialToken before the Sequence $A and none after it";

/* Reads the BOS of a TemplateProcessing: the special token before $A in "single", if any. */
static qref_status hf_read_template(const char *display, const char *field, const cJSON *template, int32_t *bos_id,
                                    qref_error *err)
{
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(template, "single");
    char label[96];
    snprintf(label, sizeof label, "%s.single", field);
    if (!cJSON_IsArray(single))
        return unsupported(display, label, single, TEMPLATE_LAYOUT, err);

    const char *bos_name = NULL;
    int specials_before = 0;
    bool sequence_seen = false;
    for (const cJSON *piece = single->child; piece != NULL; piece = piece->next) {
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(piece, "SpecialToken");
        const cJSON *sequence = cJSON_GetObjectItemCaseSensitive(piece, "Sequence");
        const char *sequence_id = string_member(sequence, "id");
        if (sequence_id != NULL && strcmp(sequence_id, "A") == 0 && !sequence_seen) {
            sequence_seen = true;
        } else if (special != NULL && string_member(special, "id") != NULL && !sequence_seen) {
            bos_name = string_member(special, "id");
            specials_before++;
        } else {
            return unsupported(display, label, piece, TEMPLATE_LAYOUT, err);
        }
    }
    if (!sequence_seen || specials_before > 1)
        return unsupported(display, label, single, TEMPLATE_LAYOUT, err);
    if (bos_name == NULL)
        return QREF_OK;

    /* special_tokens[name].ids contains the id the template inserts */
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(template, "special_tokens");
    const cJSON *entry = cJSON_GetObjectItemCaseSensitive(specials, bos_name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids");
    char entry_label[256];
    snprintf(label, sizeof label, "%s.special_tokens", field);
    member_label(label, bos_name, entry_label, sizeof entry_label);
    if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) != 1) {
        char described[160];
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %s.ids is %s; expected an array of one id", display,
                              entry_label,
                              ids != NULL ? qref_json_describe(ids, described, sizeof described) : "missing");
    }
    int64_t id = 0;
    strncat(entry_label, ".ids[0]", sizeof entry_label - strlen(entry_label) - 1);
    qref_status status = qref_json_item_int(display, entry_label, cJSON_GetArrayItem(ids, 0), 0, QREF_BPE_MAX_ID, &id,
                                            err);
    if (status != QREF_OK)
        return status;
    *bos_id = (int32_t)id;
    return QREF_OK;
}

/* Reads the post-processor: null, ByteLevel, TemplateProcessing, or a Sequence of those. */
static qref_status hf_read_post_processor(const char *display, const cJSON *root, int32_t *bos_id, bool *has_template,
                                          qref_error *err)
{
    static const char expected[] = "null, ByteLevel, TemplateProcessing, or a Sequence of those";
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (post == NULL || cJSON_IsNull(post))
        return QREF_OK;
    const cJSON *single_list[1] = {post};
    const cJSON *const *steps = single_list;
    size_t step_count = 1;
    const cJSON *processors = NULL;
    const char *type = string_member(post, "type");
    if (type != NULL && strcmp(type, "Sequence") == 0) {
        processors = cJSON_GetObjectItemCaseSensitive(post, "processors");
        if (!cJSON_IsArray(processors))
            return unsupported(display, "post_processor.processors", processors, "an array", err);
        step_count = (size_t)cJSON_GetArraySize(processors);
    }
    for (size_t i = 0; i < step_count; i++) {
        const cJSON *step = processors != NULL ? cJSON_GetArrayItem(processors, (int)i) : steps[0];
        char field[64];
        if (processors != NULL)
            snprintf(field, sizeof field, "post_processor.processors[%zu]", i);
        else
            snprintf(field, sizeof field, "post_processor");
        const char *step_type = string_member(step, "type");
        if (step_type != NULL && strcmp(step_type, "ByteLevel") == 0)
            continue;
        if (step_type == NULL || strcmp(step_type, "TemplateProcessing") != 0 || *has_template)
            return unsupported(display, field, step, expected, err);
        *has_template = true;
        qref_status status = hf_read_template(display, field, step, bos_id, err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* Reads a token member of tokenizer_config.json: a string, an AddedToken object, or null. */
static qref_status config_token(const char *display, const cJSON *config, const char *key, const char **content,
                                qref_error *err)
{
    *content = NULL;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(config, key);
    if (item == NULL || cJSON_IsNull(item))
        return QREF_OK;
    if (cJSON_IsString(item)) {
        *content = item->valuestring;
        return QREF_OK;
    }
    if (cJSON_IsObject(item) && string_member(item, "content") != NULL) {
        *content = string_member(item, "content");
        return QREF_OK;
    }
    char described[160];
    return qref_error_set(err, QREF_ERR_INVALID, "%s: %s is %s; expected a token string, an object with "
                          "\"content\", or null", display, key, qref_json_describe(item, described, sizeof described));
}

/* Looks a config token up in the finished tokenizer; fails naming both files when it is not there. */
static qref_status config_token_id(const qref_bpe *bpe, const char *display, const char *config_display,
                                   const char *key, const char *content, int32_t *id, qref_error *err)
{
    *id = -1;
    if (content == NULL)
        return QREF_OK;
    *id = qref_bpe_token_id(bpe, content, strlen(content));
    if (*id >= 0)
        return QREF_OK;
    char quoted[128];
    return qref_error_set(err, QREF_ERR_INVALID, "%s: %s %s is not a token of %s", config_display, key,
                          qref_bpe_quote(content, strlen(content), quoted, sizeof quoted), display);
}

/* Sets BOS and EOS: the template's BOS first, then the config's bos_token and eos_token. */
static qref_status hf_resolve_specials(qref_bpe *bpe, const char *display, int32_t template_bos, bool has_template,
                                       bool ignore_merges, const char *config_display, const char *config_json,
                                       size_t config_length, qref_error *err)
{
    int32_t bos_id = -1, eos_id = -1;
    bool adds_bos = false;
    if (config_json != NULL) {
        cJSON *config = NULL;
        qref_status status = qref_json_parse(config_display, config_json, config_length, QREF_JSON_MAX_DEPTH, &config,
                                             err);
        if (status != QREF_OK)
            return status;
        const char *bos = NULL, *eos = NULL;
        if (!cJSON_IsObject(config))
            status = qref_error_set(err, QREF_ERR_INVALID, "%s: the top level is not an object", config_display);
        if (status == QREF_OK)
            status = config_token(config_display, config, "bos_token", &bos, err);
        if (status == QREF_OK)
            status = config_token(config_display, config, "eos_token", &eos, err);
        if (status == QREF_OK)
            status = config_token_id(bpe, display, config_display, "bos_token", bos, &bos_id, err);
        if (status == QREF_OK)
            status = config_token_id(bpe, display, config_display, "eos_token", eos, &eos_id, err);
        if (status == QREF_OK)
            status = qref_json_get_bool(config_display, config, "add_bos_token", false, false, &adds_bos, err);
        cJSON_Delete(config);
        if (status != QREF_OK)
            return status;
    }
    if (has_template) {
        /* the post-processor decides what encode adds: its BOS, or none */
        adds_bos = template_bos >= 0;
        if (template_bos >= 0)
            bos_id = template_bos;
    }
    size_t length = 0;
    if (bos_id >= 0 && qref_bpe_token(bpe, bos_id, &length) == NULL)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: post_processor: BOS id %d is not a token", display, bos_id);
    qref_bpe_build_options(bpe, ignore_merges, bos_id, eos_id, adds_bos);
    return QREF_OK;
}

/* Runs the loader steps on a parsed tokenizer.json. */
static qref_status hf_build(const char *display, const cJSON *root, const char *config_display,
                            const char *config_json, size_t config_length, qref_bpe **out, qref_error *err)
{
    if (!cJSON_IsObject(root))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: the top level is not an object", display);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: model is missing or not an object", display);
    bool ignore_merges = false;
    const char *pattern = NULL;
    qref_status status = hf_check_model(display, model, &ignore_merges, err);
    if (status == QREF_OK)
        status = hf_check_layout(display, root, err);
    if (status == QREF_OK)
        status = hf_read_pre_tokenizer(display, root, &pattern, err);
    if (status != QREF_OK)
        return status;

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added_tokens = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    char described[160];
    if (!cJSON_IsObject(vocab) || cJSON_GetArraySize(vocab) == 0)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: model.vocab is %s; expected an object of tokens", display,
                              vocab != NULL ? qref_json_describe(vocab, described, sizeof described) : "missing");
    if (!cJSON_IsArray(merges))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: model.merges is %s; expected an array", display,
                              merges != NULL ? qref_json_describe(merges, described, sizeof described) : "missing");
    if (added_tokens != NULL && !cJSON_IsNull(added_tokens) && !cJSON_IsArray(added_tokens))
        return qref_error_set(err, QREF_ERR_INVALID, "%s: added_tokens is %s; expected an array", display,
                              qref_json_describe(added_tokens, described, sizeof described));

    /* ids run from 0 to the number of vocabulary and added entries, less one */
    int64_t capacity = cJSON_GetArraySize(vocab);
    if (cJSON_IsArray(added_tokens))
        capacity += cJSON_GetArraySize(added_tokens);
    if (capacity > QREF_BPE_MAX_ID)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %lld tokens; expected at most %d", display,
                              (long long)capacity, QREF_BPE_MAX_ID);
    qref_bpe *bpe = NULL;
    status = qref_bpe_build_create(display, QREF_BPE_SOURCE_HF_JSON, (int32_t)capacity, &bpe, err);
    if (status != QREF_OK)
        return status;
    char *scratch = malloc(2 * (size_t)QREF_BPE_MAX_TOKEN_BYTES + 2);
    if (scratch == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);

    int32_t template_bos = -1;
    bool has_template = false;
    if (status == QREF_OK)
        status = hf_define_vocab(bpe, display, vocab, (int32_t)capacity, scratch, err);
    if (status == QREF_OK)
        status = qref_bpe_build_index(bpe, err);
    if (status == QREF_OK)
        status = hf_add_merges(bpe, display, merges, scratch, err);
    if (status == QREF_OK)
        status = hf_add_added_tokens(bpe, display, cJSON_IsArray(added_tokens) ? added_tokens : NULL,
                                     (int32_t)capacity, err);
    if (status == QREF_OK)
        status = qref_bpe_build_pattern(bpe, pattern, strlen(pattern), "pre_tokenizer.pretokenizers[0].pattern.Regex",
                                        err);
    if (status == QREF_OK)
        status = hf_read_post_processor(display, root, &template_bos, &has_template, err);
    if (status == QREF_OK)
        status = qref_bpe_build_finish(bpe, err);
    if (status == QREF_OK)
        status = hf_resolve_specials(bpe, display, template_bos, has_template, ignore_merges, config_display,
                                     config_json, config_length, err);
    free(scratch);
    if (status != QREF_OK) {
        qref_bpe_free(bpe);
        return status;
    }
    *out = bpe;
    return QREF_OK;
}

qref_status qref_bpe_load_hf_json(const char *display, const char *json, size_t json_length,
                                  const char *config_display, const char *config_json,
                                  size_t config_length, qref_bpe **out, qref_error *err)
{
    *out = NULL;
    cJSON *root = NULL;
    qref_status status = qref_json_parse(display, json, json_length, QREF_JSON_MAX_DEPTH, &root, err);
    if (status != QREF_OK)
        return status;
    status = hf_build(display, root, config_display != NULL ? config_display : "tokenizer_config.json", config_json,
                      config_length, out, err);
    cJSON_Delete(root);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* tiktoken                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Value of a standard base64 digit (RFC 4648 section 4), or -1. */
static int base64_digit(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Decodes padded standard base64 (what Python's base64.b64decode reads in tiktoken's
 * load_tiktoken_bpe) into out. Returns the byte count, or -1 with *bad at the offending offset.
 * Like Python, it ignores the unused low bits of the last digit.
 */
static ptrdiff_t base64_decode(const char *text, size_t length, uint8_t *out, size_t *bad)
{
    if (length == 0 || length % 4 != 0) {
        *bad = length;
        return -1;
    }
    size_t padding = 0;
    if (text[length - 1] == '=')
        padding = text[length - 2] == '=' ? 2 : 1;
    size_t written = 0;
    uint32_t bits = 0;
    for (size_t i = 0; i < length; i++) {
        int digit = i >= length - padding ? 0 : base64_digit((uint8_t)text[i]);
        if (digit < 0) {
            *bad = i;
            return -1;
        }
        bits = bits << 6 | (uint32_t)digit;
        if (i % 4 == 3) {
            out[written++] = (uint8_t)(bits >> 16);
            out[written++] = (uint8_t)(bits >> 8);
            out[written++] = (uint8_t)bits;
            bits = 0;
        }
    }
    return (ptrdiff_t)(written - padding);
}

/* Appends Meta's special tokens after the n ranks, with ids n, n + 1, ... */
static qref_status tiktoken_add_specials(qref_bpe *bpe, int32_t base, qref_bpe_tiktoken_specials specials,
                                         qref_error *err)
{
    /* tokenizer.py: 256 special tokens; the named ones first, reserved ones filling the rest */
    static const char *const llama3[] = {
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|start_header_id|>",
        "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"};
    static const char *const llama3_1[] = {
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
        "<|eot_id|>", "<|python_tag|>", "<|image|>"};
    const char *const *named = specials == QREF_BPE_TIKTOKEN_LLAMA3_1 ? llama3_1 : llama3;
    int named_count = specials == QREF_BPE_TIKTOKEN_LLAMA3_1 ? 12 : 10;
    /* LLaMA-3 continues with reserved 5, 6, ...; LLaMA-3.1 with reserved 2, 3, ... */
    int reserved_first = specials == QREF_BPE_TIKTOKEN_LLAMA3_1 ? 2 : 5;

    for (int i = 0; i < 256; i++) {
        char name[64];
        if (i < named_count)
            snprintf(name, sizeof name, "%s", named[i]);
        else
            snprintf(name, sizeof name, "<|reserved_special_token_%d|>", reserved_first + i - named_count);
        char label[96];
        snprintf(label, sizeof label, "special token %s", name);
        qref_bpe_added_flags flags = {.special = true};
        qref_status status = qref_bpe_build_token(bpe, base + i, name, strlen(name), QREF_BPE_TOKEN_CONTROL, false,
                                                  label, err);
        if (status == QREF_OK)
            status = qref_bpe_build_added(bpe, base + i, &flags, label, err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/* Defines one token per "BASE64 RANK" line; ranks must be 0 .. lines-1, each once. */
static qref_status tiktoken_define_ranks(qref_bpe *bpe, const char *display, const uint8_t *data, size_t size,
                                         int32_t lines, uint8_t *scratch, qref_error *err)
{
    size_t pos = 0;
    size_t line_number = 0;
    while (pos < size) {
        const uint8_t *end = memchr(data + pos, '\n', size - pos);
        size_t line_length = end != NULL ? (size_t)(end - (data + pos)) : size - pos;
        const char *line = (const char *)data + pos;
        line_number++;
        pos += line_length + (end != NULL ? 1 : 0);
        if (line_length == 0)
            continue;

        char quoted[128];
        const char *space = memchr(line, ' ', line_length);
        size_t token_length = space != NULL ? (size_t)(space - line) : line_length;
        size_t digits = space != NULL ? line_length - token_length - 1 : 0;
        bool rank_ok = digits > 0 && digits <= 9;
        for (size_t i = 0; rank_ok && i < digits; i++)
            rank_ok = space[1 + i] >= '0' && space[1 + i] <= '9';
        if (!rank_ok)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: line %zu is %s; expected \"BASE64 RANK\" with a "
                                  "decimal rank", display, line_number,
                                  qref_bpe_quote(line, line_length, quoted, sizeof quoted));
        int32_t rank = (int32_t)strtol(space + 1, NULL, 10);
        if (rank >= lines)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: line %zu: rank %d is out of range; expected 0 to %d "
                                  "(one rank per line)", display, line_number, rank, lines - 1);
        if (token_length > QREF_BPE_MAX_TOKEN_BYTES)
            return qref_error_set(err, QREF_ERR_INVALID, "%s: line %zu: token of %zu base64 digits; expected at most "
                                  "%u", display, line_number, token_length, QREF_BPE_MAX_TOKEN_BYTES);
        size_t bad = 0;
        ptrdiff_t decoded = base64_decode(line, token_length, scratch, &bad);
        if (decoded <= 0) {
            if (bad < token_length)
                return qref_error_set(err, QREF_ERR_INVALID, "%s: line %zu: invalid base64 %s: character '%c' at "
                                      "offset %zu", display, line_number,
                                      qref_bpe_quote(line, token_length, quoted, sizeof quoted), line[bad], bad);
            return qref_error_set(err, QREF_ERR_INVALID, "%s: line %zu: invalid base64 %s: %zu digits; expected a "
                                  "non-zero multiple of 4", display, line_number,
                                  qref_bpe_quote(line, token_length, quoted, sizeof quoted), token_length);
        }
        char label[64];
        snprintf(label, sizeof label, "line %zu (rank %d)", line_number, rank);
        qref_status status = qref_bpe_build_token(bpe, rank, (const char *)scratch, (size_t)decoded,
                                                  QREF_BPE_TOKEN_NORMAL, true, label, err);
        if (status != QREF_OK)
            return status;
    }
    return QREF_OK;
}

/*
 * Adds every split of a token into two tokens as a merge ranked by the token's rank. Then the
 * lowest-rank pair of a piece is the pair whose concatenation has the lowest rank, which is
 * what tiktoken's byte_pair_merge picks.
 */
static qref_status tiktoken_add_merges(qref_bpe *bpe, int32_t count, qref_error *err)
{
    for (int32_t id = 0; id < count; id++) {
        size_t length = 0;
        const char *bytes = qref_bpe_token(bpe, id, &length);
        for (size_t split = 1; split < length; split++) {
            int32_t left = qref_bpe_build_find(bpe, bytes, split);
            if (left < 0)
                continue;
            int32_t right = qref_bpe_build_find(bpe, bytes + split, length - split);
            if (right < 0)
                continue;
            qref_status status = qref_bpe_build_merge(bpe, left, right, id, (uint32_t)id, err);
            if (status != QREF_OK)
                return status;
        }
    }
    return QREF_OK;
}

qref_status qref_bpe_load_tiktoken(const char *display, const uint8_t *data, size_t size,
                                   qref_bpe_tiktoken_specials specials, qref_bpe **out,
                                   qref_error *err)
{
    *out = NULL;
    if (specials != QREF_BPE_TIKTOKEN_LLAMA3 && specials != QREF_BPE_TIKTOKEN_LLAMA3_1)
        return qref_error_set(err, QREF_ERR_INTERNAL, "%s: unknown special-token list %d", display, (int)specials);

    /* 1. count the non-empty lines: one token each */
    size_t lines = 0;
    for (size_t pos = 0; pos < size;) {
        const uint8_t *end = memchr(data + pos, '\n', size - pos);
        size_t line_length = end != NULL ? (size_t)(end - (data + pos)) : size - pos;
        lines += line_length > 0;
        pos += line_length + 1;
    }
    if (lines == 0 || lines > (size_t)QREF_BPE_MAX_ID - 256)
        return qref_error_set(err, QREF_ERR_INVALID, "%s: %zu tokens; expected 1 to %d", display, lines,
                              QREF_BPE_MAX_ID - 256);

    /* 2. tokens by rank, then the merge pairs they imply, then the special tokens */
    qref_bpe *bpe = NULL;
    qref_status status = qref_bpe_build_create(display, QREF_BPE_SOURCE_TIKTOKEN, (int32_t)lines + 256, &bpe, err);
    if (status != QREF_OK)
        return status;
    uint8_t *scratch = malloc(QREF_BPE_MAX_TOKEN_BYTES);
    if (scratch == NULL)
        status = qref_error_set(err, QREF_ERR_NOMEM, "%s: out of memory", display);
    if (status == QREF_OK)
        status = tiktoken_define_ranks(bpe, display, data, size, (int32_t)lines, scratch, err);
    free(scratch);
    if (status == QREF_OK)
        status = qref_bpe_build_index(bpe, err);
    if (status == QREF_OK)
        status = tiktoken_add_merges(bpe, (int32_t)lines, err);
    if (status == QREF_OK)
        status = tiktoken_add_specials(bpe, (int32_t)lines, specials, err);
    if (status == QREF_OK)
        status = qref_bpe_build_pattern(bpe, QREF_BPE_LLAMA3_PATTERN, strlen(QREF_BPE_LLAMA3_PATTERN),
                                        "the LLaMA-3 pattern", err);
    if (status == QREF_OK) {
        /* tiktoken looks every piece up whole first; Meta's generation code always passes bos=True */
        qref_bpe_build_options(bpe, true, (int32_t)lines, (int32_t)lines + 1, true);
        status = qref_bpe_build_finish(bpe, err);
    }
    if (status != QREF_OK) {
        qref_bpe_free(bpe);
        return status;
    }
    *out = bpe;
    return QREF_OK;
}
