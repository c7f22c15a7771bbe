/*
 * Strict JSON: what cJSON 1.7.15 lets through and qref_json_parse must reject (repeated keys,
 * RFC 8259 grammar violations, invalid UTF-8, excess nesting, trailing content), exact
 * integers beyond 2^53, and the messages of the typed getters.
 */
#include "test_support.h"

#include <stdio.h>
#include <string.h>

#include "io/qref_json.h"

static qref_status parse_text(const char *text, int depth, cJSON **root, qref_error *err)
{
    return qref_json_parse("test.json", text, strlen(text), depth, root, err);
}

static void json_parse_valid_document(void **state)
{
    (void)state;
    const char *text = " {\"name\": \"caf\xc3\xa9\", \"list\": [1, -2.5e3, true, null, {}], \"nested\": {\"k\": []}}\r\n\t ";
    cJSON *root = NULL;
    qref_error err = {0};
    assert_int_equal(parse_text(text, 3, &root, &err), QREF_OK);
    assert_true(cJSON_IsObject(root));
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "list");
    assert_int_equal(cJSON_GetArraySize(list), 5);
    assert_true(cJSON_GetArrayItem(list, 1)->valuedouble == -2500.0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "name")->valuestring, "caf\xc3\xa9");
    cJSON_Delete(root);
}

static void json_duplicate_key_at_root(void **state)
{
    (void)state;
    cJSON *root = NULL;
    qref_error err = {0};
    qref_status status = parse_text("{\"a\": 1, \"b\": 2, \"a\": 3}", 4, &root, &err);
    test_assert_error(status, &err, QREF_ERR_INVALID, "duplicate key \"a\" at $.a");
    assert_null(root);
    assert_non_null(strstr(err.message, "test.json"));
}

static void json_duplicate_key_nested_path(void **state)
{
    (void)state;
    cJSON *root = NULL;
    qref_error err = {0};
    qref_status status =
        parse_text("{\"outer\": {\"list\": [0, {\"x.y\": 1, \"x.y\": 2}]}}", 8, &root, &err);
    test_assert_error(status, &err, QREF_ERR_INVALID, "duplicate key \"x.y\" at $.outer.list[1][\"x.y\"]");
    assert_null(root);
}

static void json_trailing_content_rejected(void **state)
{
    (void)state;
    cJSON *root = NULL;
    qref_error err = {0};
    test_assert_error(parse_text("{} x", 4, &root, &err), &err, QREF_ERR_INVALID,
                 "only whitespace may follow it");
    test_assert_error(parse_text("{}{}", 4, &root, &err), &err, QREF_ERR_INVALID, "byte 2 (line 1, column 3)");
    assert_null(root);
}

static void json_depth_limit(void **state)
{
    (void)state;
    cJSON *root = NULL;
    qref_error err = {0};
    test_assert_error(parse_text("[[[[1]]]]", 3, &root, &err), &err, QREF_ERR_INVALID,
                 "nesting is deeper than the limit of 3 levels");
    assert_int_equal(parse_text("[[[[1]]]]", 4, &root, &err), QREF_OK);
    cJSON_Delete(root);
}

/* Each case is valid for cJSON 1.7.15 or breaks RFC 8259 in one way. */
static void json_grammar_violations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *phrase;
    } cases[] = {
        {"", "unexpected end of input"},
        {"  ", "unexpected end of input"},
        {"01", "leading zeros"},
        {"[1.]", "decimal point must be followed by a digit"},
        {"[.5]", "unexpected character '.'"},
        {"[+1]", "unexpected character '+'"},
        {"[-]", "needs a digit after '-'"},
        {"[1e]", "exponent needs a digit"},
        {"[1e999]", "out of the range of a double"},
        {"[NaN]", "unexpected character 'N'"},
        {"[Infinity]", "unexpected character 'I'"},
        {"[tru]", "expected \"true\""},
        {"[1,]", "unexpected character ']'"},
        {"{\"a\":1,}", "expected a string key"},
        {"{'a':1}", "expected a string key"},
        {"{\"a\" 1}", "expected ':'"},
        {"[1 2]", "expected ',' or ']'"},
        {"/* c */ {}", "unexpected character '/'"},
        {"\"a\tb\"", "control character 0x09"},
        {"\"\\x41\"", "invalid escape \\x"},
        {"\"\\u12G4\"", "4 hex digits"},
        {"\"\\u0000\"", "\\u0000 inside a string is not supported"},
        {"\"\\ud800\"", "not followed by a low surrogate"},
        {"\"\\ud800\\u0041\"", "expected a low surrogate"},
        {"\"\\udc00\"", "unpaired low surrogate"},
        {"\"\xc0\x80\"", "invalid UTF-8 byte 0xc0"},
        {"\"\xed\xa0\x80\"", "invalid UTF-8 byte 0xed"},
        {"\"\xf4\x90\x80\x80\"", "invalid UTF-8 byte 0xf4"},
        {"\"abc", "unterminated string"},
        {"\xef\xbb\xbf{}", "byte order mark"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *root = NULL;
        qref_error err = {0};
        qref_status status = parse_text(cases[i].text, 8, &root, &err);
        if (status != QREF_ERR_INVALID)
            print_error("case %zu (%s) was accepted\n", i, cases[i].text);
        test_assert_error(status, &err, QREF_ERR_INVALID, cases[i].phrase);
        assert_null(root);
    }
}

static void json_embedded_nul_rejected(void **state)
{
    (void)state;
    const char text[] = "{\"a\": 1}\0";
    cJSON *root = NULL;
    qref_error err = {0};
    test_assert_error(qref_json_parse("test.json", text, sizeof text - 1, 4, &root, &err), &err, QREF_ERR_INVALID,
                 "byte 0x00");
}

static void json_valid_escapes_accepted(void **state)
{
    (void)state;
    cJSON *root = NULL;
    qref_error err = {0};
    /* U+1F600 as a surrogate pair, and the escaped forms of quote, slash and newline. */
    assert_int_equal(parse_text("[\"\\ud83d\\ude00\", \"\\\"\\/\\n\", \"\xf0\x9f\x98\x80\"]", 2, &root, &err),
                     QREF_OK);
    assert_string_equal(cJSON_GetArrayItem(root, 0)->valuestring, "\xf0\x9f\x98\x80");
    assert_string_equal(cJSON_GetArrayItem(root, 1)->valuestring, "\"/\n");
    cJSON_Delete(root);
}

/* 2^53 + 1 and INT64_MAX are not doubles, so only the literal gives them exactly. */
static void json_get_int_exact_64_bit(void **state)
{
    (void)state;
    const char *text = "{\"big\": 9007199254740993, \"max\": 9223372036854775807, \"min\": -9223372036854775808,"
                       " \"over\": 9223372036854775808}";
    cJSON *root = NULL;
    qref_error err = {0};
    assert_int_equal(parse_text(text, 2, &root, &err), QREF_OK);
    int64_t value = 0;
    assert_int_equal(qref_json_get_int("test.json", root, "big", true, 0, INT64_MIN, INT64_MAX, &value, &err),
                     QREF_OK);
    assert_true(value == 9007199254740993ll);
    assert_int_equal(qref_json_get_int("test.json", root, "max", true, 0, INT64_MIN, INT64_MAX, &value, &err),
                     QREF_OK);
    assert_true(value == INT64_MAX);
    assert_int_equal(qref_json_get_int("test.json", root, "min", true, 0, INT64_MIN, INT64_MAX, &value, &err),
                     QREF_OK);
    assert_true(value == INT64_MIN);
    test_assert_error(qref_json_get_int("test.json", root, "over", true, 0, INT64_MIN, INT64_MAX, &value, &err), &err,
                 QREF_ERR_INVALID, "found 9223372036854775808 (a number)");
    cJSON_Delete(root);
}

static void json_get_int_rejects_non_integers(void **state)
{
    (void)state;
    const char *text = "{\"frac\": 1.5, \"point\": 1.0, \"exp\": 1e3, \"text\": \"64\", \"neg\": -1, \"nul\": null}";
    cJSON *root = NULL;
    qref_error err = {0};
    assert_int_equal(parse_text(text, 2, &root, &err), QREF_OK);
    int64_t value = 0;
    test_assert_error(qref_json_get_int("cfg.json", root, "frac", true, 0, 0, 100, &value, &err), &err, QREF_ERR_INVALID,
                 "cfg.json: key \"frac\": found 1.5 (a number), expected an integer in [0, 100]");
    test_assert_error(qref_json_get_int("cfg.json", root, "point", true, 0, 0, 100, &value, &err), &err,
                 QREF_ERR_INVALID, "found 1.0 (a number)");
    test_assert_error(qref_json_get_int("cfg.json", root, "exp", true, 0, 0, 10000, &value, &err), &err,
                 QREF_ERR_INVALID, "found 1e3 (a number)");
    test_assert_error(qref_json_get_int("cfg.json", root, "text", true, 0, 0, 100, &value, &err), &err, QREF_ERR_INVALID,
                 "found \"64\" (a string)");
    test_assert_error(qref_json_get_int("cfg.json", root, "neg", true, 0, 0, 100, &value, &err), &err, QREF_ERR_INVALID,
                 "found -1 (a number), expected an integer in [0, 100]");
    test_assert_error(qref_json_get_int("cfg.json", root, "nul", false, 7, 0, 100, &value, &err), &err,
                 QREF_ERR_INVALID, "found null, expected an integer");
    cJSON_Delete(root);
}

static void json_getters_absent_and_present(void **state)
{
    (void)state;
    const char *text = "{\"i\": 12, \"d\": 0.25, \"b\": true, \"s\": \"silu\"}";
    cJSON *root = NULL;
    qref_error err = {0};
    assert_int_equal(parse_text(text, 2, &root, &err), QREF_OK);

    int64_t i = 0;
    double d = 0;
    bool b = false;
    const char *s = NULL;
    assert_int_equal(qref_json_get_int("c.json", root, "i", true, 0, 0, 100, &i, &err), QREF_OK);
    assert_int_equal(i, 12);
    assert_int_equal(qref_json_get_double("c.json", root, "d", true, 0, &d, &err), QREF_OK);
    assert_true(d == 0.25);
    assert_int_equal(qref_json_get_bool("c.json", root, "b", true, false, &b, &err), QREF_OK);
    assert_true(b);
    assert_int_equal(qref_json_get_string("c.json", root, "s", true, NULL, &s, &err), QREF_OK);
    assert_string_equal(s, "silu");

    /* Absent and optional: the fallback. */
    assert_int_equal(qref_json_get_int("c.json", root, "zz", false, 5, 0, 100, &i, &err), QREF_OK);
    assert_int_equal(i, 5);
    assert_int_equal(qref_json_get_double("c.json", root, "zz", false, 1.5, &d, &err), QREF_OK);
    assert_true(d == 1.5);
    assert_int_equal(qref_json_get_string("c.json", root, "zz", false, "gelu", &s, &err), QREF_OK);
    assert_string_equal(s, "gelu");

    /* Absent and required, or present with the wrong type. */
    test_assert_error(qref_json_get_int("c.json", root, "zz", true, 0, 0, 100, &i, &err), &err, QREF_ERR_INVALID,
                 "c.json: missing required key \"zz\"");
    test_assert_error(qref_json_get_bool("c.json", root, "i", true, false, &b, &err), &err, QREF_ERR_INVALID,
                 "key \"i\": found 12 (a number), expected true or false");
    test_assert_error(qref_json_get_string("c.json", root, "b", true, NULL, &s, &err), &err, QREF_ERR_INVALID,
                 "key \"b\": found true (a boolean), expected a string");
    test_assert_error(qref_json_get_double("c.json", root, "s", true, 0, &d, &err), &err, QREF_ERR_INVALID,
                 "key \"s\": found \"silu\" (a string), expected a finite number");
    test_assert_error(qref_json_get_int("c.json", root, "i", true, 0, 13, 100, &i, &err), &err, QREF_ERR_INVALID,
                 "found 12 (a number), expected an integer in [13, 100]");
    cJSON_Delete(root);
}

static void json_utf8_validator(void **state)
{
    (void)state;
    assert_true(qref_json_utf8_valid("", 0));
    assert_true(qref_json_utf8_valid("plain ascii", 11));
    assert_true(qref_json_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9)); /* e-acute, euro, U+1F600 */
    assert_false(qref_json_utf8_valid("\xc3", 1));                               /* truncated */
    assert_false(qref_json_utf8_valid("\xe0\x80\xaf", 3));                       /* overlong '/' */
    assert_false(qref_json_utf8_valid("\xed\xb0\x80", 3));                       /* surrogate U+DC00 */
    assert_false(qref_json_utf8_valid("\xf5\x80\x80\x80", 4));                   /* above U+10FFFF */
    assert_false(qref_json_utf8_valid("\x80", 1));                               /* lone continuation */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_parse_valid_document),
        cmocka_unit_test(json_duplicate_key_at_root),
        cmocka_unit_test(json_duplicate_key_nested_path),
        cmocka_unit_test(json_trailing_content_rejected),
        cmocka_unit_test(json_depth_limit),
        cmocka_unit_test(json_grammar_violations),
        cmocka_unit_test(json_embedded_nul_rejected),
        cmocka_unit_test(json_valid_escapes_accepted),
        cmocka_unit_test(json_get_int_exact_64_bit),
        cmocka_unit_test(json_get_int_rejects_non_integers),
        cmocka_unit_test(json_getters_absent_and_present),
        cmocka_unit_test(json_utf8_validator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
