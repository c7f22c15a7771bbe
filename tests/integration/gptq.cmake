# GPTQ artifacts: qconform quantize writes every option of the AutoGPTQ layout (bits, group
# size, sym, v1 and v2 zero points, act-order and static groups, GPTQModel's pack_dtype words)
# from synth256 and stories260k, and verify must read each back clean against its reference
# (for round-to-nearest artifacts verify re-quantizes the reference and compares every code).
# The real AutoGPTQ artifact must verify clean and reproduce its golden. make_gptq_cases
# derives one broken artifact per finding id of the GPTQ codec (a fixed-seed generator; each
# case's comment in make_gptq_cases.c says what it changes), which verify must report with
# that id, its message and the exit code of its severity.
set(GPTQ_DIR ${CMAKE_CURRENT_BINARY_DIR}/gptq)
set(GPTQ_BASE ${GPTQ_DIR}/base)
set(GPTQ_CASES ${GPTQ_DIR}/cases)
set(GPTQ_MODELS ${PROJECT_SOURCE_DIR}/fixtures/models)
set(GPTQ_CHECK ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
file(MAKE_DIRECTORY ${GPTQ_BASE})

# ---- writer: name, model, quantize options (","-separated), the line quantize prints ---------
# The printed line names the bits, the groups, sym, the checkpoint format and the layout. Auto
# writes gptq_v2 where round-to-nearest gives some zero point 0, which v1 cannot store.
set(gptq_bases
  "synth256-w4g128-v1" synth256 "--bits,4,--group,128,--checkpoint-format,gptq"
  "4-bit, group 128, asym, gptq checkpoint_format gptq -> "
  "synth256-w4g128-v2" synth256 "--bits,4,--group,128,--checkpoint-format,gptq_v2"
  "4-bit, group 128, asym, gptq checkpoint_format gptq_v2 -> "
  "synth256-w4g128-sym-v1" synth256 "--bits,4,--group,128,--sym,--checkpoint-format,gptq"
  "4-bit, group 128, sym, gptq checkpoint_format gptq -> "
  "synth256-w8g128" synth256 "--bits,8,--group,128"
  "8-bit, group 128, asym, gptq checkpoint_format gptq(_v2)? -> "
  "synth256-w4g32" synth256 "--bits,4,--group,32"
  "4-bit, group 32, asym, gptq checkpoint_format gptq(_v2)? -> "
  "synth256-w3g128" synth256 "--bits,3,--group,128"
  "3-bit, group 128, asym, gptq checkpoint_format gptq(_v2)? -> "
  "synth256-w2g64-sym" synth256 "--bits,2,--group,64,--sym"
  "2-bit, group 64, sym, gptq checkpoint_format gptq -> "
  "synth256-w4g128-act" synth256 "--bits,4,--group,128,--desc-act"
  "4-bit, group 128, asym, gptq checkpoint_format gptq(_v2)?, desc_act -> "
  "synth256-w4g128-static" synth256 "--bits,4,--group,128,--desc-act,--static-groups"
  "4-bit, group 128, asym, gptq checkpoint_format gptq(_v2)?, desc_act static_groups -> "
  "synth256-w4g128-int8" synth256 "--bits,4,--group,128,--pack-dtype,int8"
  "4-bit, group 128, asym, gptq checkpoint_format gptq(_v2)?, pack_dtype int8 -> "
  "synth256-w4g64-int16-sym" synth256 "--bits,4,--group,64,--sym,--pack-dtype,int16"
  "4-bit, group 64, sym, gptq checkpoint_format gptq, pack_dtype int16 -> "
  "synth256-w8g128-int64" synth256 "--bits,8,--group,128,--pack-dtype,int64"
  "8-bit, group 128, asym, gptq checkpoint_format gptq(_v2)?, pack_dtype int64 -> "
  "synth256-w2g64-int16-act" synth256 "--bits,2,--group,64,--desc-act,--pack-dtype,int16"
  "2-bit, group 64, asym, gptq checkpoint_format gptq(_v2)?, desc_act, pack_dtype int16 -> "
  "stories260k-w4-v1" stories260k "--bits,4,--checkpoint-format,gptq"
  "4-bit, per-channel, asym, gptq checkpoint_format gptq -> "
  "stories260k-w4-v2" stories260k "--bits,4,--checkpoint-format,gptq_v2"
  "4-bit, per-channel, asym, gptq checkpoint_format gptq_v2 -> "
  "stories260k-w3g4" stories260k "--bits,3,--group,4"
  "3-bit, group 4, asym, gptq checkpoint_format gptq(_v2)? -> "
  "stories260k-w4g4-act-int64" stories260k "--bits,4,--group,4,--desc-act,--pack-dtype,int64"
  "4-bit, group 4, asym, gptq checkpoint_format gptq(_v2)?, desc_act, pack_dtype int64 -> ")
list(LENGTH gptq_bases gptq_bases_length)
math(EXPR gptq_bases_last "${gptq_bases_length} - 1")
set(gptq_all_bases "")
foreach(i RANGE 0 ${gptq_bases_last} 4)
  math(EXPR i_model "${i} + 1")
  math(EXPR i_options "${i} + 2")
  math(EXPR i_printed "${i} + 3")
  list(GET gptq_bases ${i} name)
  list(GET gptq_bases ${i_model} model)
  list(GET gptq_bases ${i_options} options)
  list(GET gptq_bases ${i_printed} printed)
  string(REPLACE "," ";" options "${options}")
  list(APPEND gptq_all_bases gptq_base_${name})

  add_test(NAME integration.gptq.quantize_${name}
    COMMAND qconform quantize ${GPTQ_MODELS}/${model} --method rtn ${options} --format gptq
            --out ${GPTQ_BASE}/${name} --force)
  set_tests_properties(integration.gptq.quantize_${name} PROPERTIES
    LABELS "integration;gptq" FIXTURES_SETUP gptq_base_${name}
    PASS_REGULAR_EXPRESSION "with rtn: ${printed}")

  # read back: structure clean, codes (round-to-nearest) or weights (act-order) as the reference gives
  set(output_dir ${GPTQ_DIR}/out/verify_${name})
  add_test(NAME integration.gptq.verify_${name}
    COMMAND ${CMAKE_COMMAND}
            "-DCOMMAND=$<TARGET_FILE:qconform>;verify;${GPTQ_BASE}/${name};--reference;${GPTQ_MODELS}/${model};--report;${output_dir}/report.json"
            -DEXPECTED_EXIT=0 -DOUTPUT_DIR=${output_dir} -DREPORT_JSON=${output_dir}/report.json
            -DEXPECTED_VERDICT=PASS "-DEXPECTED_OUTPUT=every linear is within the [2-8]-bit limit"
            -P ${GPTQ_CHECK})
  set_tests_properties(integration.gptq.verify_${name} PROPERTIES
    LABELS "integration;gptq" FIXTURES_REQUIRED gptq_base_${name} TIMEOUT 120)
endforeach()

# act-order round-to-nearest: the codes equal a fresh quantization in the same column order
foreach(name synth256-w4g128-act synth256-w2g64-int16-act stories260k-w4g4-act-int64)
  list(FIND gptq_bases ${name} index)
  math(EXPR index "${index} + 1")
  list(GET gptq_bases ${index} model)
  add_test(NAME integration.gptq.rtn_codes_${name}
    COMMAND qconform verify ${GPTQ_BASE}/${name} --reference ${GPTQ_MODELS}/${model})
  set_tests_properties(integration.gptq.rtn_codes_${name} PROPERTIES
    LABELS "integration;gptq" FIXTURES_REQUIRED gptq_base_${name} TIMEOUT 120
    PASS_REGULAR_EXPRESSION "rtn[.]codes +PASS .*in act-order's column order")
endforeach()

# inspect names the pack_dtype, and qweight has the 768 * 4 / 16 = 192 rows of int16 words
add_test(NAME integration.gptq.inspect_int16
  COMMAND qconform inspect ${GPTQ_BASE}/synth256-w4g64-int16-sym)
set_tests_properties(integration.gptq.inspect_int16 PROPERTIES
  LABELS "integration;gptq" FIXTURES_REQUIRED gptq_base_synth256-w4g64-int16-sym
  PASS_REGULAR_EXPRESSION "pack_dtype=\"int16\".*model[.]layers[.]0[.]mlp[.]down_proj[.]qweight +[[]192,256[]] +gptq +4 +64 ")

# the real AutoGPTQ artifact: clean structure, and the suite's golden logits
add_test(NAME integration.gptq.verify_autogptq_suite
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;verify;${GPTQ_MODELS}/synth256-autogptq-w4g128;--suite;${PROJECT_SOURCE_DIR}/suites/synth256-autogptq.json;--report;${GPTQ_DIR}/out/autogptq/report.json"
          -DEXPECTED_EXIT=0 -DOUTPUT_DIR=${GPTQ_DIR}/out/autogptq -DREPORT_JSON=${GPTQ_DIR}/out/autogptq/report.json
          -DEXPECTED_VERDICT=PASS "-DEXPECTED_OUTPUT=14 of 14 linears in 2 layers are stored in the gptq layout"
          -P ${GPTQ_CHECK})
set_tests_properties(integration.gptq.verify_autogptq_suite PROPERTIES LABELS "integration;gptq" TIMEOUT 300)

# usage errors of the new options
add_test(NAME integration.gptq.quantize_usage_pack_dtype_3bit
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${GPTQ_MODELS}/synth256;--method;rtn;--bits;3;--format;gptq;--pack-dtype;int16;--out;${GPTQ_DIR}/w3-int16"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=option --pack-dtype: 3-bit codes need int32 words"
          -P ${GPTQ_CHECK})
add_test(NAME integration.gptq.quantize_usage_static_groups
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${GPTQ_MODELS}/synth256;--method;rtn;--bits;4;--format;gptq;--static-groups;--out;${GPTQ_DIR}/static"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=--static-groups applies to --desc-act"
          -P ${GPTQ_CHECK})
add_test(NAME integration.gptq.quantize_usage_pack_dtype_name
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${GPTQ_MODELS}/synth256;--method;rtn;--bits;4;--format;gptq;--pack-dtype;uint32;--out;${GPTQ_DIR}/uint32"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=option --pack-dtype: unknown type 'uint32'"
          -P ${GPTQ_CHECK})
set_tests_properties(integration.gptq.quantize_usage_pack_dtype_3bit integration.gptq.quantize_usage_static_groups
  integration.gptq.quantize_usage_pack_dtype_name PROPERTIES LABELS "integration;gptq")

# ---- malformed artifacts ----------------------------------------------------------------------
add_executable(make_gptq_cases make_gptq_cases.c case_support.c)
target_link_libraries(make_gptq_cases PRIVATE qref)

add_test(NAME integration.gptq.cases_generate
  COMMAND make_gptq_cases ${GPTQ_MODELS} ${GPTQ_BASE} ${GPTQ_CASES})
set_tests_properties(integration.gptq.cases_generate PROPERTIES
  LABELS "integration;gptq" FIXTURES_REQUIRED "${gptq_all_bases}" FIXTURES_SETUP gptq_cases)

# Adds integration.gptq.CASE: `qconform verify` on case CASE must report finding ID. An ERROR
# finding exits 3 and prints "qconform: error: ID: MESSAGE" on stderr, and the JSON report's
# verdict is ERROR with a check whose message matches REGEX. A WARNING finding exits 0, and
# the table lists ID with verdict WARN and the message, and overall WARN.
function(add_gptq_case_test case id verdict regex)
  string(REPLACE "." "[.]" id_regex ${id})
  set(output_dir ${GPTQ_DIR}/out/${case})
  set(args verify ${GPTQ_CASES}/${case} --report ${output_dir}/report.json)
  if(verdict STREQUAL "ERROR")
    list(APPEND args --junit ${output_dir}/report.xml)
    set(checks -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=qconform: error: ${id_regex}: [^\n]*${regex}"
               "-DEXPECTED_OUTPUT=${regex}" -DEXPECTED_VERDICT=ERROR -DREPORT_JUNIT=${output_dir}/report.xml)
  else()
    set(checks -DEXPECTED_EXIT=0 "-DEXPECTED_OUTPUT=${id_regex} +${verdict} [^\n]*${regex}.*overall: ${verdict} ")
  endif()
  add_test(NAME integration.gptq.${case}
    COMMAND ${CMAKE_COMMAND} "-DCOMMAND=$<TARGET_FILE:qconform>;${args}" ${checks} -DOUTPUT_DIR=${output_dir}
            -DREPORT_JSON=${output_dir}/report.json -P ${GPTQ_CHECK})
  set_tests_properties(integration.gptq.${case} PROPERTIES
    LABELS "integration;gptq;malformed" FIXTURES_REQUIRED gptq_cases TIMEOUT 120)
endfunction()

# [0-9]+ stands for a position that make_gptq_cases draws from its seeded stream.
add_gptq_case_test(gptq_missing gptq.missing ERROR
  "tensor \"model[.]layers[.]1[.]self_attn[.]k_proj[.]qzeros\": missing, expected a tensor of dtype I32 [(]pack_dtype int32[)]")
add_gptq_case_test(gptq_dtype gptq.dtype ERROR
  "gptq_dtype/model[.]safetensors: tensor \"model[.]layers[.]0[.]mlp[.]gate_proj[.]scales\": dtype I16, expected F16 [(]or BF16, F32[)]")
add_gptq_case_test(gptq_shape gptq.shape ERROR
  "tensor \"model[.]layers[.]1[.]mlp[.]up_proj[.]g_idx\": shape [[]255[]], expected [[]256[]] [(]one group index per input feature[)]")
add_gptq_case_test(gptq_bits_mismatch gptq.bits_mismatch ERROR
  "tensor \"model[.]layers[.]0[.]self_attn[.]q_proj[.]qweight\": shape [[]64, 256[]], expected [[]32, 256[]] [(]4-bit packing of 256 input features by 256 output features[)]. hint: the row count matches 8-bit codes but the config declares 4 bits")
add_gptq_case_test(gptq_group_size_mismatch gptq.group_size_mismatch ERROR
  "tensor \"model[.]layers[.]0[.]self_attn[.]q_proj[.]scales\": shape [[]8, 256[]], expected [[]2, 256[]] [(]2 groups by 256 output features[)]. hint: 8 rows are the groups of group_size 32, but the config declares group_size 128")
add_gptq_case_test(gptq_sym_mismatch gptq.sym_mismatch ERROR
  "tensor \"model[.]layers[.]0[.]self_attn[.]q_proj[.]qzeros\": zero point [0-9]+ at [[][01][]][[][0-9]+[]] [(]stored field [0-9]+, format gptq[)], expected 8 for sym=true. [0-9]+ of 512 zero points differ")
add_gptq_case_test(gptq_desc_act_false gptq.desc_act_mismatch WARN
  "tensor \"model[.]layers[.]0[.]self_attn[.]q_proj[.]g_idx\": value 1 at [[][0-9]+[]], expected 0 = [0-9]+ / group size 128 because the config declares desc_act false")
add_gptq_case_test(gptq_desc_act_true gptq.desc_act_mismatch WARN
  "tensor \"model[.]layers[.]0[.]self_attn[.]q_proj[.]g_idx\": every value is i / group size 128 [(]monotone[)], but the config declares desc_act true without static_groups")
add_gptq_case_test(gptq_g_idx_out_of_range gptq.g_idx.out_of_range ERROR
  "tensor \"model[.]layers[.]0[.]self_attn[.]o_proj[.]g_idx\": value [0-9]+ at [[][0-9]+[]], expected a group in 0[.][.]1. 1 of 256 entries are out of range")
add_gptq_case_test(gptq_g_idx_group_size gptq.g_idx.group_size ERROR
  "tensor \"model[.]layers[.]1[.]self_attn[.]v_proj[.]g_idx\": group 0 holds 12[79] input features, expected 128 [(]group size 128[)]. 2 of 2 groups have another size")
add_gptq_case_test(gptq_zero_point_out_of_range gptq.zero_point.out_of_range ERROR
  "tensor \"model[.]layers[.]1[.]mlp[.]gate_proj[.]qzeros\": zero point 16 at [[][01][]][[][0-9]+[]] [(]stored field 15, all ones, format gptq[)] is outside 0[.][.]15, expected a stored field in 0[.][.]14")
add_gptq_case_test(gptq_zero_point_v1_underflow gptq.zero_point.v1_underflow ERROR
  "tensor \"model[.]layers[.]0[.]self_attn[.]v_proj[.]qzeros\": v1 zero-point underflow at [[][01][]][[][0-9]+[]]: stored field 15 [(]all ones[)] decodes to zero point 16, outside 0[.][.]15")
add_gptq_case_test(gptq_scale_non_finite gptq.scale.non_finite ERROR
  "tensor \"model[.]layers[.]1[.]self_attn[.]q_proj[.]scales\": scale inf at [[][01][]][[][0-9]+[]], expected a finite value > 0. 1 of 512 scales are not finite")
add_gptq_case_test(gptq_scale_zero gptq.scale.zero ERROR
  "tensor \"model[.]layers[.]0[.]mlp[.]down_proj[.]scales\": scale -0 at [[][0-5][]][[][0-9]+[]], expected a finite value > 0. 1 of 1536 scales are zero")
add_gptq_case_test(gptq_scale_negative gptq.scale.negative ERROR
  "tensor \"model[.]layers[.]1[.]mlp[.]down_proj[.]scales\": scale -[0-9.e-]+ at [[][0-5][]][[][0-9]+[]], expected a finite value > 0. 1 of 1536 scales are negative")
add_gptq_case_test(gptq_padding gptq.padding ERROR
  "tensor \"model[.]layers[.]2[.]mlp[.]down_proj[.]qweight\": word [[]21[]][[][0-9]+[]] is 0x[0-9a-f]+, but its bits 16[.][.]31 follow the last of 172 4-bit codes and must be zero")
add_gptq_case_test(dequant_fp16_overflow dequant.fp16_overflow ERROR
  "tensor \"model[.]layers[.]0[.]self_attn[.]q_proj[.]scales\": dequantized weight [[][0-9]+[]][[][0-9]+[]] = scale 40000 [*] [(]code [0-9]+ - zero point [0-9]+[)] is -?inf in F16, expected [|]w[|] <= 65504")
foreach(case autogptq_as_v2 synth256_v1_as_v2 stories260k_v1_as_v2)
  add_gptq_case_test(gptq_format_${case} gptq.format_mismatch ERROR
    "zero points one step off: read as checkpoint_format gptq_v2, the mean code minus zero point per group is [+][01][.][0-9]+ steps.*Hint: re-label checkpoint_format as \"gptq\"")
endforeach()
foreach(case synth256_v2_as_v1 stories260k_v2_as_v1)
  add_gptq_case_test(gptq_format_${case} gptq.format_mismatch ERROR
    "zero points one step off: read as checkpoint_format gptq, the mean code minus zero point per group is -[01][.][0-9]+ steps.*Hint: re-label checkpoint_format as \"gptq_v2\"")
endforeach()
add_gptq_case_test(gptq_format_sym_v1_as_v2 gptq.format_mismatch ERROR
  "all 12288 zero points read as 7 in checkpoint_format gptq_v2 [(]stored field 7[)], which is the gptq encoding of the symmetric 4-bit zero point 8, expected 8")
add_gptq_case_test(gptq_format_mixed gptq.format_mismatch WARN
  "weak evidence of zero points one step off: read as checkpoint_format gptq_v2, the mean code minus zero point per group is [+]0[.]5[0-9]+ steps")

# rtn.codes: one code moved one step is a FAIL against the reference, naming the linear and code
foreach(case plain act_order)
  add_test(NAME integration.gptq.rtn_codes_${case}
    COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform>
            "-DARGS=verify;${GPTQ_CASES}/rtn_codes_${case};--reference;${GPTQ_MODELS}/synth256"
            -DREPORT=${GPTQ_DIR}/out/rtn_codes_${case}.json -DID=rtn.codes -DVERDICT=FAIL -DEXPECTED_EXIT=1
            "-DMESSAGE=differ from a fresh reference quantization: model[.]layers[.][01][.][a-z_.]+: code [[][0-9]+[]][[][0-9]+[]] is [0-9]+, expected [0-9]+"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/check_finding.cmake)
  set_tests_properties(integration.gptq.rtn_codes_${case} PROPERTIES
    LABELS "integration;gptq;malformed" FIXTURES_REQUIRED gptq_cases TIMEOUT 120)
endforeach()

# eval and logits dequantize the linears they run, so they stop at the same errors
add_test(NAME integration.gptq.dequant_fp16_overflow.logits
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;logits;${GPTQ_CASES}/dequant_fp16_overflow;--ids;1,2,3;--out;${GPTQ_DIR}/out/overflow.logits"
          -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=dequantized weight [[][0-9]+[]][[][0-9]+[]] = scale 40000"
          -P ${GPTQ_CHECK})
add_test(NAME integration.gptq.gptq_padding.eval
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;eval;${GPTQ_CASES}/gptq_padding;--task;wikitext2;--data;${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw;--windows;1"
          -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=model[.]layers[.]2[.]mlp[.]down_proj[.]qweight\": word [[]21[]]"
          -P ${GPTQ_CHECK})
set_tests_properties(integration.gptq.dequant_fp16_overflow.logits integration.gptq.gptq_padding.eval PROPERTIES
  LABELS "integration;gptq;malformed" FIXTURES_REQUIRED gptq_cases TIMEOUT 120)
