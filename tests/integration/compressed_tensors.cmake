# Integration tests of compressed-tensors artifacts: the quantize writer on the fixture models,
# verify against the reference, eval, inspect, and one malformed artifact per finding id of the
# compressed-tensors codec (make_ct_malformed.c says how each is made).

set(CT_WORK ${CMAKE_CURRENT_BINARY_DIR}/ct)
set(CT_MODELS ${PROJECT_SOURCE_DIR}/fixtures/models)
set(CT_CHECK ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
set(CT_FINDING ${CMAKE_CURRENT_SOURCE_DIR}/check_ct_finding.cmake)
file(MAKE_DIRECTORY ${CT_WORK})

# ---- the writer ------------------------------------------------------------------------------
# Bases of the malformed corpus: synth256 4-bit group 128 and stories260k 4-bit per channel,
# both asymmetric; stories260k's 172-wide down_proj leaves padding in every packed row.
add_test(NAME integration.ct.quantize_synth256_w4g128
  COMMAND qconform quantize ${CT_MODELS}/synth256 --method rtn --bits 4 --group 128 --format compressed-tensors
          --out ${CT_WORK}/synth256-w4g128 --force)
set_tests_properties(integration.ct.quantize_synth256_w4g128 PROPERTIES
  LABELS "integration;ct" FIXTURES_SETUP ct_synth256_base
  PASS_REGULAR_EXPRESSION "quantized 2 layers \\(14 linears\\) with rtn: 4-bit, group 128, asym, compressed-tensors pack-quantized -> ")
add_test(NAME integration.ct.quantize_stories260k_w4
  COMMAND qconform quantize ${CT_MODELS}/stories260k --method rtn --bits 4 --format compressed-tensors
          --out ${CT_WORK}/stories260k-w4 --force)
set_tests_properties(integration.ct.quantize_stories260k_w4 PROPERTIES
  LABELS "integration;ct" FIXTURES_SETUP ct_stories_base
  PASS_REGULAR_EXPRESSION "quantized 5 layers \\(35 linears\\) with rtn: 4-bit, per-channel, asym, compressed-tensors pack-quantized -> ")
add_test(NAME integration.ct.quantize_synth256_w8_sym
  COMMAND qconform quantize ${CT_MODELS}/synth256 --method rtn --bits 8 --sym --format compressed-tensors
          --out ${CT_WORK}/synth256-w8 --force)
set_tests_properties(integration.ct.quantize_synth256_w8_sym PROPERTIES
  LABELS "integration;ct" FIXTURES_SETUP ct_synth256_w8
  PASS_REGULAR_EXPRESSION "quantized 2 layers \\(14 linears\\) with rtn: 8-bit, per-channel, sym, compressed-tensors pack-quantized -> ")

# Each artifact against its reference: structure without findings and every linear within the
# weight-error limit of its bit width.
foreach(case synth256-w4g128:synth256:ct_synth256_base stories260k-w4:stories260k:ct_stories_base
             synth256-w8:synth256:ct_synth256_w8)
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 artifact)
  list(GET parts 1 reference)
  list(GET parts 2 fixture)
  set(output_dir ${CT_WORK}/out/verify-${artifact})
  add_test(NAME integration.ct.verify_${artifact}
    COMMAND ${CMAKE_COMMAND}
            "-DCOMMAND=$<TARGET_FILE:qconform>;verify;${CT_WORK}/${artifact};--reference;${CT_MODELS}/${reference};--report;${output_dir}/report.json"
            -DEXPECTED_EXIT=0 -DEXPECTED_VERDICT=PASS -DOUTPUT_DIR=${output_dir}
            -DREPORT_JSON=${output_dir}/report.json
            "-DEXPECTED_OUTPUT=linears in [0-9]+ layers are stored in the compressed-tensors layout with valid structure"
            -P ${CT_CHECK})
  set_tests_properties(integration.ct.verify_${artifact} PROPERTIES
    LABELS "integration;ct" FIXTURES_REQUIRED ${fixture} TIMEOUT 300)
endforeach()

add_test(NAME integration.ct.eval_stories260k_w4
  COMMAND qconform eval ${CT_WORK}/stories260k-w4 --task wikitext2
          --data ${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw --protocol llamacpp --windows 1)
set_tests_properties(integration.ct.eval_stories260k_w4 PROPERTIES
  LABELS "integration;ct" FIXTURES_REQUIRED ct_stories_base
  PASS_REGULAR_EXPRESSION "^wikitext2 ppl [0-9]+\\.[0-9]+ ")

add_test(NAME integration.ct.inspect_synth256_w4g128
  COMMAND qconform inspect ${CT_WORK}/synth256-w4g128)
set_tests_properties(integration.ct.inspect_synth256_w4g128 PROPERTIES
  LABELS "integration;ct" FIXTURES_REQUIRED ct_synth256_base
  PASS_REGULAR_EXPRESSION "model[.]layers[.]0[.]mlp[.]down_proj[.]weight_packed +\\[256,96\\] +ct-pack +4 +128 ")

add_test(NAME integration.ct.list_findings COMMAND qconform inspect --list-findings)
set_tests_properties(integration.ct.list_findings PROPERTIES
  LABELS "integration;ct"
  PASS_REGULAR_EXPRESSION "ct[.]targets[.]overlap +warning .*ct[.]scale[.]invalid +error .*ct[.]activations[.]not_emulated +info")

add_test(NAME integration.ct.usage_bits
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${CT_MODELS}/synth256;--method;rtn;--bits;3;--format;compressed-tensors;--out;${CT_WORK}/w3"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=option --bits: 3 is not supported by the compressed-tensors pack-quantized format, expected 4 or 8"
          -P ${CT_CHECK})
set_tests_properties(integration.ct.usage_bits PROPERTIES LABELS "integration;ct")

# ---- malformed artifacts, one per finding id ---------------------------------------------------
set(CT_CORPUS ${CT_WORK}/corpus)
add_executable(make_ct_malformed make_ct_malformed.c case_support.c)
target_link_libraries(make_ct_malformed PRIVATE qref)
add_test(NAME integration.ct.malformed.generate
  COMMAND make_ct_malformed ${CT_WORK}/synth256-w4g128 ${CT_WORK}/stories260k-w4 ${CT_MODELS}/synth256 ${CT_CORPUS})
set_tests_properties(integration.ct.malformed.generate PROPERTIES
  LABELS "integration;ct" FIXTURES_REQUIRED "ct_synth256_base;ct_stories_base" FIXTURES_SETUP ct_corpus)

# Cases: corpus entry, finding id, its verdict in the report (ERROR exits 3; WARN and PASS, an
# INFO finding, exit 0), and a regex of its message naming the tensor or key, the value found
# and the value expected. [0-9]+ stands for a linear, element or value drawn from the seeded
# stream.
set(ct_cases
  ct_schema_invalid ct.schema.invalid ERROR
  "config_groups[.]group_0[.]weights: unknown key \"bogus\" [(]QuantizationArgs forbids extra keys"
  ct_schema_strategy ct.schema.strategy ERROR
  "config_groups[.]group_0[.]weights[.]strategy: found \"rowwise\" [(]a string[)], expected one of \"tensor\""
  ct_schema_group_size ct.schema.group_size ERROR
  "config_groups[.]group_0[.]weights: strategy \"group\" with group_size missing, expected a positive group_size"
  ct_schema_bits ct.schema.bits ERROR
  "config_groups[.]group_0[.]weights: num_bits 3 with format \"pack-quantized\", expected 4 or 8"
  ct_schema_status ct.schema.status ERROR
  "quantization_status: found \"frozen\", expected \"compressed\""
  ct_targets_unmatched ct.targets.unmatched WARN
  "config_groups[.]group_0[.]targets: \"re:[.][*]vision_tower[.][*]\" matches none of the 15 linear layers"
  ct_target_regex_invalid ct.schema.invalid ERROR
  "config_groups[.]group_0[.]targets: \"re:[(]\" is not a valid regular expression [(]missing closing parenthesis at offset 1[)]"
  ct_targets_overlap ct.targets.overlap WARN
  "config_groups[.]group_0 and config_groups[.]group_1 both target 2 linear layers .*compressed-tensors applies group_1"
  ct_ignored_quantized ct.ignored.quantized ERROR
  "linear \"model[.]layers[.][0-9]+[.][a-z_.]+\" is stored quantized [(]tensor \"[^\"]+[.]weight_packed\", I32 [[][0-9]+, [0-9]+[]][)], expected a float weight because an ignore entry matches it"
  ct_targeted_float ct.targeted.float ERROR
  "linear \"model[.]layers[.][0-9]+[.][a-z_.]+\" is stored in float [(]F32 [[][0-9]+, [0-9]+[]][)], expected the pack-quantized tensors because config_groups[.]group_0 targets it"
  ct_tensor_missing ct.tensor.missing ERROR
  "tensor \"model[.]layers[.][0-9]+[.][a-z_.]+[.]weight_scale\" not found, expected it because config_groups[.]group_0 quantizes the weights"
  ct_tensor_shape ct.tensor.shape ERROR
  "weight_scale\": shape [[]2, [0-9]+[]], expected [[][0-9]+, 2[]] [(]one scale per output row and group[)]"
  ct_tensor_dtype ct.tensor.dtype ERROR
  "weight_packed\": dtype U32, expected I32"
  ct_weight_shape_value ct.weight_shape.value ERROR
  "weight_shape\": contains [[][0-9]+, [0-9]+[]], expected [[][0-9]+, [0-9]+[]] [(]out_features, in_features of model"
  ct_zero_point_unexpected ct.zero_point.unexpected ERROR
  "weight_zero_point\": a zero point is stored, expected none because config_groups[.]group_0[.]weights is symmetric"
  ct_zero_point_missing ct.zero_point.missing ERROR
  "weight_zero_point\" not found, expected it because config_groups[.]group_0[.]weights is asymmetric"
  ct_zero_point_range ct.zero_point.range ERROR
  "weight_zero_point\": zero point 9 at element [0-9]+, expected -8[.][.]7 for 4-bit weights"
  ct_codes_range ct.codes.range ERROR
  "[.]weight\": code -9 at [[][0-9]+[]][[][0-9]+[]], expected -8[.][.]7 for 4-bit weights"
  ct_padding ct.padding ERROR
  "down_proj[.]weight_packed\": word [[][0-9]+[]][[]21[]] is 0x[0-9a-f]+, expected zero bits above bit 15, the padding after the last of 172 codes of the row"
  ct_scale_nan ct.scale.invalid ERROR
  "weight_scale\": scale nan at [[][0-9]+[]][[][0-9]+[]], expected a finite value > 0"
  ct_scale_zero ct.scale.invalid ERROR
  "weight_scale\": scale 0 at [[][0-9]+[]][[][0-9]+[]], expected a finite value > 0"
  ct_scale_negative ct.scale.invalid ERROR
  "weight_scale\": scale -0[.]0078125 at [[][0-9]+[]][[][0-9]+[]], expected a finite value > 0"
  ct_g_idx_invalid ct.g_idx.invalid ERROR
  "weight_g_idx\": value 99 at [[][0-9]+[]], expected a group in 0[.][.][0-9]+"
  ct_input_scale_missing ct.input_scale.missing ERROR
  "input_scale\" not found, expected it because config_groups[.]group_0[.]input_activations is static"
  ct_input_scale_invalid ct.input_scale.invalid ERROR
  "input_scale\": scale -0[.]02 at [[]0[]], expected a finite value > 0"
  ct_activations_not_emulated ct.activations.not_emulated PASS
  "config_groups[.]group_0 quantizes input activations [(]8-bit int tensor sym[)]. evaluation keeps activations in float"
  ct_valid_int_quantized structure PASS
  "14 of 14 linears in 2 layers are stored in the compressed-tensors layout with valid structure"
  ct_valid_g_idx structure PASS
  "14 of 14 linears in 2 layers are stored in the compressed-tensors layout with valid structure")

list(LENGTH ct_cases ct_length)
math(EXPR ct_last "${ct_length} - 1")
foreach(i RANGE 0 ${ct_last} 4)
  math(EXPR j "${i} + 1")
  math(EXPR k "${i} + 2")
  math(EXPR l "${i} + 3")
  list(GET ct_cases ${i} case)
  list(GET ct_cases ${j} id)
  list(GET ct_cases ${k} verdict)
  list(GET ct_cases ${l} regex)
  set(output_dir ${CT_WORK}/out/${case})
  set(checks -DEXPECTED_VERDICT=${verdict} -DEXPECTED_ID=${id} "-DEXPECTED_OUTPUT=${regex}"
             -DOUTPUT_DIR=${output_dir} -DREPORT_JSON=${output_dir}/report.json)
  if(verdict STREQUAL "ERROR")
    list(APPEND checks -DEXPECTED_EXIT=3 -DREPORT_JUNIT=${output_dir}/report.xml)
    set(junit --junit ${output_dir}/report.xml)
  else()
    list(APPEND checks -DEXPECTED_EXIT=0)
    set(junit "")
  endif()
  add_test(NAME integration.ct.malformed.${case}
    COMMAND ${CMAKE_COMMAND}
            "-DCOMMAND=$<TARGET_FILE:qconform>;verify;${CT_CORPUS}/${case};--report;${output_dir}/report.json;${junit}"
            ${checks} -P ${CT_FINDING})
  set_tests_properties(integration.ct.malformed.${case} PROPERTIES
    LABELS "integration;ct" FIXTURES_REQUIRED ct_corpus TIMEOUT 120)
endforeach()

# eval refuses a malformed artifact with the same message as verify
add_test(NAME integration.ct.malformed.ct_scale_nan.eval
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;eval;${CT_CORPUS}/ct_scale_nan;--task;wikitext2;--data;${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw;--windows;1"
          -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=weight_scale\": scale nan at [[][0-9]+[]][[][0-9]+[]], expected a finite value > 0"
          -P ${CT_CHECK})
set_tests_properties(integration.ct.malformed.ct_scale_nan.eval PROPERTIES
  LABELS "integration;ct" FIXTURES_REQUIRED ct_corpus TIMEOUT 120)
