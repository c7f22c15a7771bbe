# Integration tests of bitsandbytes artifacts: qconform quantize --format bnb on synth256
# (NF4 with double quantization, FP4, LLM.int8), verify and eval of what it writes, and one
# malformed artifact per finding id of the bitsandbytes codec (make_bnb_malformed.c), each
# run through verify with its finding id, verdict and message asserted
# (check_bnb_finding.cmake).

set(BNB_WORK ${CMAKE_CURRENT_BINARY_DIR}/bnb)
set(BNB_SYNTH256 ${PROJECT_SOURCE_DIR}/fixtures/models/synth256)
file(MAKE_DIRECTORY ${BNB_WORK})

# ---- quantize, verify, eval ----------------------------------------------------------------------
foreach(case "nf4-dq|nf4,--double-quant|nf4: 4-bit, blocksize 64, double quantization"
             "fp4|fp4|fp4: 4-bit, blocksize 64, f32 block scales"
             "int8|int8|LLM[.]int8: 8-bit, per row")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 name)
  list(GET parts 1 method)
  list(GET parts 2 printed)
  string(REPLACE "," ";" method_args "${method}")
  add_test(NAME integration.bnb.quantize_synth256_${name}
    COMMAND qconform quantize ${BNB_SYNTH256} --method ${method_args} --format bnb
            --out ${BNB_WORK}/synth256-${name} --force)
  set_tests_properties(integration.bnb.quantize_synth256_${name} PROPERTIES
    LABELS "integration;bnb;quantize" FIXTURES_SETUP bnb_synth256_${name}
    PASS_REGULAR_EXPRESSION "quantized 2 layers \\(14 linears\\) with bitsandbytes ${printed} -> ")

  # structure PASS and every linear within its bit width's weight-error limit of synth256
  add_test(NAME integration.bnb.verify_synth256_${name}
    COMMAND qconform verify ${BNB_WORK}/synth256-${name} --reference ${BNB_SYNTH256}
            --report ${BNB_WORK}/verify-${name}.json)
  set_tests_properties(integration.bnb.verify_synth256_${name} PROPERTIES
    LABELS "integration;bnb;verify" FIXTURES_REQUIRED bnb_synth256_${name}
    PASS_REGULAR_EXPRESSION "14 of 14 linears in 2 layers are stored in the bitsandbytes layout.*overall: PASS")
endforeach()

# The weight provider dequantizes the NF4 artifact for the forward.
add_test(NAME integration.bnb.eval_synth256_nf4_dq
  COMMAND qconform eval ${BNB_WORK}/synth256-nf4-dq --task wikitext2
          --data ${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw --protocol llamacpp --windows 1)
set_tests_properties(integration.bnb.eval_synth256_nf4_dq PROPERTIES
  LABELS "integration;bnb" FIXTURES_REQUIRED bnb_synth256_nf4-dq
  PASS_REGULAR_EXPRESSION "^wikitext2 ppl [0-9]+\\.[0-9]+ ")

# Options that do not apply to --format bnb are usage errors.
add_test(NAME integration.bnb.quantize_usage_bits
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${BNB_SYNTH256};--method;nf4;--bits;4;--format;bnb;--out;${BNB_WORK}/usage"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=--bits, --group, --sym and --checkpoint-format do not apply"
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
add_test(NAME integration.bnb.quantize_usage_int8_double_quant
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${BNB_SYNTH256};--method;int8;--double-quant;--format;bnb;--out;${BNB_WORK}/usage"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=--double-quant and --blocksize apply to nf4 and fp4"
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
set_tests_properties(integration.bnb.quantize_usage_bits integration.bnb.quantize_usage_int8_double_quant
  PROPERTIES LABELS "integration;bnb;quantize")

# ---- malformed artifacts -------------------------------------------------------------------------
add_executable(make_bnb_malformed ${CMAKE_CURRENT_SOURCE_DIR}/make_bnb_malformed.c
                                  ${CMAKE_CURRENT_SOURCE_DIR}/case_support.c)
target_link_libraries(make_bnb_malformed PRIVATE qref)

add_test(NAME integration.bnb.malformed_generate
  COMMAND make_bnb_malformed ${BNB_WORK}/synth256-nf4-dq ${BNB_WORK}/synth256-fp4 ${BNB_WORK}/synth256-int8
          ${BNB_WORK}/corpus)
set_tests_properties(integration.bnb.malformed_generate PROPERTIES
  LABELS "integration;bnb;malformed" FIXTURES_SETUP bnb_corpus
  FIXTURES_REQUIRED "bnb_synth256_nf4-dq;bnb_synth256_fp4;bnb_synth256_int8")

# case, finding id, verdict, exit code, message regex ([0-9]+ stands for a seeded position)
set(bnb_malformed_cases
  "bnb_quant_state_malformed|bnb.quant_state.malformed|ERROR|3|q_proj[.]weight[.]quant_state[.]bitsandbytes__nf4\": unknown key \"bogus\", expected only quant_type"
  "bnb_quant_state_mismatch|bnb.quant_state.mismatch|ERROR|3|k_proj[.]weight[.]quant_state[.]bitsandbytes__nf4\": shape [[]256, 128[]], expected [[]128, 256[]]"
  "bnb_weight_size|bnb.weight.size|ERROR|3|gate_proj[.]weight\": U8 [[]98272, 1[]], expected U8 [[]98304, 1[]]: 98304 bytes of packed codes for the quant_state shape [[]768, 256[]]"
  "bnb_absmax_invalid|bnb.absmax.invalid|ERROR|3|layers[.]0[.]mlp[.]up_proj[.]weight[.]absmax\": absmax nan at [[][0-9]+[]], expected a finite value >= 0"
  "bnb_absmax_decoded_negative|bnb.absmax.decoded_negative|WARN|0|v_proj[.]weight[.]absmax\": 512 block scales decode below zero, the first at block 0"
  "bnb_quant_map_mismatch|bnb.quant_map.mismatch|ERROR|3|layers[.]1[.]mlp[.]up_proj[.]weight[.]quant_map\": entry 0 is 0, expected -1 [(]the standard nf4 table"
  "bnb_nested_invalid|bnb.nested.invalid|ERROR|3|down_proj[.]weight[.]nested_quant_map\": entry [0-9]+ is [-0-9.e]+, expected [-0-9.e]+ [(]create_dynamic_map's signed 8-bit map"
  "bnb_int8_invalid|bnb.int8.invalid|ERROR|3|o_proj[.]weight_format\": value 2 [(]col_turing[)], expected 0 [(]\"row\"[)]"
  "bnb_scb_invalid|bnb.scb.invalid|ERROR|3|k_proj[.]SCB\": row scale -1 at [[][0-9]+[]], expected a finite value > 0"
  "bnb_scb_zero|bnb.scb.zero|WARN|0|up_proj[.]SCB\": 1 row scales are 0, the first at [[][0-9]+[]]"
  "bnb_skip_modules_unlisted|bnb.skip_modules.unlisted|ERROR|3|linear \"model[.]layers[.]1[.]self_attn[.]o_proj\" is stored unquantized [(]model[.]layers[.]1[.]self_attn[.]o_proj[.]weight, F32[)], but config[.]json: quantization_config: llm_int8_skip_modules does not list it"
  "bnb_skip_modules_quantized|bnb.skip_modules.quantized|ERROR|3|linear \"model[.]layers[.]0[.]self_attn[.]o_proj\" is stored quantized, but config[.]json: quantization_config: llm_int8_skip_modules lists it"
  "bnb_config_mismatch|bnb.config.mismatch|WARN|0|quant_type \"nf4\" in its quant_state, but config[.]json: quantization_config: bnb_4bit_quant_type is \"fp4\""
  "bnb_config_mode|bnb.config.mode|ERROR|3|is stored as 4-bit [(]quant_state and absmax[)], but config[.]json: quantization_config declares load_in_8bit")

foreach(entry IN LISTS bnb_malformed_cases)
  string(REPLACE "|" ";" fields "${entry}")
  list(GET fields 0 case)
  list(GET fields 1 id)
  list(GET fields 2 verdict)
  list(GET fields 3 exit)
  list(GET fields 4 regex)
  add_test(NAME integration.bnb.malformed.${case}
    COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DARTIFACT=${BNB_WORK}/corpus/${case}
            -DREPORT=${BNB_WORK}/report-${case}.json -DID=${id} -DVERDICT=${verdict} -DEXPECTED_EXIT=${exit}
            -DEXPECTED_OVERALL=${verdict} "-DMESSAGE=${regex}"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/check_bnb_finding.cmake)
  set_tests_properties(integration.bnb.malformed.${case} PROPERTIES
    LABELS "integration;bnb;malformed" FIXTURES_REQUIRED bnb_corpus TIMEOUT 120)
endforeach()
