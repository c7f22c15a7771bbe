# AWQ artifacts (AutoAWQ's GEMM and GEMV layouts): qconform quantize writes them from synth256
# with AWQ's pseudo quantizer, verify checks them against the reference, eval runs one, and
# make_awq_malformed derives one broken artifact per finding id of the AWQ codec (a fixed-seed
# generator; each case's comment in make_awq_malformed.c says what it changes), which verify
# must report with that id, its message and the exit code of its severity.
set(AWQ_DIR ${CMAKE_CURRENT_BINARY_DIR}/awq)
set(AWQ_BASE ${AWQ_DIR}/base)
set(AWQ_CORPUS ${AWQ_DIR}/corpus)
set(AWQ_REFERENCE ${PROJECT_SOURCE_DIR}/fixtures/models/synth256)
set(AWQ_CHECK ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
file(MAKE_DIRECTORY ${AWQ_BASE})

# ---- writer: name, --format, --group, zero_point (true, or false for --sym) -------------------
set(awq_bases
  gemm awq-gemm 128 true
  gemv awq-gemv 128 true
  gemm-sym awq-gemm 128 false
  gemv-g32 awq-gemv 32 true
  gemv-g64-sym awq-gemv 64 false
  gemm-g32-sym awq-gemm 32 false
  gemm-g64 awq-gemm 64 true)
list(LENGTH awq_bases awq_bases_length)
math(EXPR awq_bases_last "${awq_bases_length} - 1")
foreach(i RANGE 0 ${awq_bases_last} 4)
  math(EXPR i_format "${i} + 1")
  math(EXPR i_group "${i} + 2")
  math(EXPR i_zero "${i} + 3")
  list(GET awq_bases ${i} name)
  list(GET awq_bases ${i_format} format)
  list(GET awq_bases ${i_group} group)
  list(GET awq_bases ${i_zero} zero_point)
  set(sym_flag "")
  if(zero_point STREQUAL "false")
    set(sym_flag --sym)
  endif()
  string(REGEX REPLACE "^awq-" "" version ${format})

  add_test(NAME integration.awq.quantize_${name}
    COMMAND qconform quantize ${AWQ_REFERENCE} --method rtn-awq --format ${format} --group ${group} ${sym_flag}
            --out ${AWQ_BASE}/${name} --force)
  set_tests_properties(integration.awq.quantize_${name} PROPERTIES
    LABELS "integration;awq" FIXTURES_SETUP awq_base_${name}
    PASS_REGULAR_EXPRESSION "quantized 2 layers [(]14 linears[)] with rtn-awq: 4-bit, group ${group}, zero_point ${zero_point}, awq version ${version} -> ")

  # the artifact reads back as AWQ, and every linear is within the 4-bit limit (3 x 2.37 / 15) of the reference
  add_test(NAME integration.awq.verify_${name}
    COMMAND ${CMAKE_COMMAND}
            "-DCOMMAND=$<TARGET_FILE:qconform>;verify;${AWQ_BASE}/${name};--reference;${AWQ_REFERENCE};--report;${AWQ_DIR}/out/verify_${name}/report.json"
            -DEXPECTED_EXIT=0 -DOUTPUT_DIR=${AWQ_DIR}/out/verify_${name} -DREPORT_JSON=${AWQ_DIR}/out/verify_${name}/report.json
            -DEXPECTED_VERDICT=PASS
            "-DEXPECTED_OUTPUT=every linear is within the 4-bit limit of 0[.]474 relative Frobenius error"
            -P ${AWQ_CHECK})
  set_tests_properties(integration.awq.verify_${name} PROPERTIES
    LABELS "integration;awq" FIXTURES_REQUIRED awq_base_${name})
endforeach()

add_test(NAME integration.awq.inspect_gemv
  COMMAND qconform inspect ${AWQ_BASE}/gemv)
set_tests_properties(integration.awq.inspect_gemv PROPERTIES
  LABELS "integration;awq" FIXTURES_REQUIRED awq_base_gemv
  PASS_REGULAR_EXPRESSION "format=\"awq\".*version=\"gemv\".*model[.]layers[.]0[.]mlp[.]down_proj[.]qweight +[[]256,96[]] +awq-gemv +4 +128 ")

add_test(NAME integration.awq.eval_gemm_sym
  COMMAND qconform eval ${AWQ_BASE}/gemm-sym --task wikitext2
          --data ${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw --protocol llamacpp --windows 1)
set_tests_properties(integration.awq.eval_gemm_sym PROPERTIES
  LABELS "integration;awq" FIXTURES_REQUIRED awq_base_gemm-sym
  PASS_REGULAR_EXPRESSION "^wikitext2 ppl [0-9]+[.][0-9]+ ")

# writer errors: a width the layout cannot hold (stories260k's FFN is 172 wide), a group size
# GEMV does not implement, and usage errors
add_test(NAME integration.awq.quantize_gemm_out_172
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${PROJECT_SOURCE_DIR}/fixtures/models/stories260k;--method;rtn-awq;--format;awq-gemm;--group;4;--out;${AWQ_DIR}/stories260k-gemm"
          -DEXPECTED_EXIT=3
          "-DEXPECTED_STDERR=model[.]layers[.]0[.]mlp[.]gate_proj: out_features 172 is not a multiple of 8, which the AWQ GEMM layout packs"
          -P ${AWQ_CHECK})
add_test(NAME integration.awq.quantize_gemv_group_16
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${AWQ_REFERENCE};--method;rtn-awq;--format;awq-gemv;--group;16;--out;${AWQ_DIR}/gemv-g16"
          -DEXPECTED_EXIT=3
          "-DEXPECTED_STDERR=group size 16 is not implemented by the AWQ GEMV layout, expected 32, 64 or at least 128"
          -P ${AWQ_CHECK})
add_test(NAME integration.awq.quantize_usage_bits
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${AWQ_REFERENCE};--method;rtn-awq;--bits;8;--format;awq-gemm;--out;${AWQ_DIR}/w8"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=option --bits: 8 is not supported by the AWQ GEMM and GEMV layouts, expected 4"
          -P ${AWQ_CHECK})
add_test(NAME integration.awq.quantize_usage_method
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${AWQ_REFERENCE};--method;rtn;--format;awq-gemv;--out;${AWQ_DIR}/rtn"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=unknown method 'rtn' for --format awq-gemv [(]supported: rtn-awq"
          -P ${AWQ_CHECK})
set_tests_properties(integration.awq.quantize_gemm_out_172 integration.awq.quantize_gemv_group_16
  integration.awq.quantize_usage_bits integration.awq.quantize_usage_method PROPERTIES LABELS "integration;awq")

# ---- malformed artifacts ----------------------------------------------------------------------
add_executable(make_awq_malformed make_awq_malformed.c case_support.c)
target_link_libraries(make_awq_malformed PRIVATE qref)

add_test(NAME integration.awq.malformed_generate
  COMMAND make_awq_malformed ${AWQ_BASE} ${AWQ_REFERENCE} ${AWQ_CORPUS})
set_tests_properties(integration.awq.malformed_generate PROPERTIES
  LABELS "integration;awq" FIXTURES_REQUIRED "awq_base_gemm;awq_base_gemv;awq_base_gemm-sym"
  FIXTURES_SETUP awq_corpus)

# Adds integration.awq.CASE: `qconform verify` on corpus entry CASE must report finding ID.
# An ERROR finding exits 3 and prints "qconform: error: ID: MESSAGE" on stderr, and the JSON
# report's verdict is ERROR with a check whose message matches REGEX. A WARNING (INFO) finding
# exits 0, and the table lists ID with verdict WARN (PASS) and the message, and overall WARN
# (PASS).
function(add_awq_malformed_test case id verdict regex)
  string(REPLACE "." "[.]" id_regex ${id})
  set(output_dir ${AWQ_DIR}/out/${case})
  set(args verify ${AWQ_CORPUS}/${case} --report ${output_dir}/report.json)
  if(verdict STREQUAL "ERROR")
    list(APPEND args --junit ${output_dir}/report.xml)
    set(checks -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=qconform: error: ${id_regex}: [^\n]*${regex}"
               "-DEXPECTED_OUTPUT=${regex}" -DEXPECTED_VERDICT=ERROR -DREPORT_JUNIT=${output_dir}/report.xml)
  else()
    set(checks -DEXPECTED_EXIT=0 "-DEXPECTED_OUTPUT=${id_regex} +${verdict} [^\n]*${regex}.*overall: ${verdict} ")
  endif()
  add_test(NAME integration.awq.${case}
    COMMAND ${CMAKE_COMMAND} "-DCOMMAND=$<TARGET_FILE:qconform>;${args}" ${checks} -DOUTPUT_DIR=${output_dir}
            -DREPORT_JSON=${output_dir}/report.json -P ${AWQ_CHECK})
  set_tests_properties(integration.awq.${case} PROPERTIES
    LABELS "integration;awq;malformed" FIXTURES_REQUIRED awq_corpus TIMEOUT 120)
endfunction()

add_awq_malformed_test(awq_tensor_missing awq.tensor.missing ERROR
  "tensor \"model[.]layers[.]1[.]mlp[.]down_proj[.]scales\": missing, expected an F16 tensor of the AWQ gemm layout")
add_awq_malformed_test(awq_dtype awq.dtype ERROR
  "awq_dtype/model[.]safetensors: tensor \"model[.]layers[.]0[.]self_attn[.]k_proj[.]qzeros\": dtype U32, expected I32")
add_awq_malformed_test(awq_shape awq.shape ERROR
  "awq_shape/model[.]safetensors: tensor \"model[.]layers[.]0[.]self_attn[.]o_proj[.]qweight\": shape [[]255, 32[]], expected [[]256, 32[]] = [[]in, out / 8[]] of the gemm layout")
add_awq_malformed_test(awq_bits awq.bits ERROR
  "model[.]layers[.]0[.]self_attn[.]q_proj: the config [(]config[.]json: quantization_config[)] declares bits 8, but AutoAWQ's GEMM and GEMV layouts hold only 4-bit codes")
add_awq_malformed_test(awq_group_size awq.group_size ERROR
  "model[.]layers[.]0[.]self_attn[.]q_proj: scales [[]2, 256[]] and qzeros have the gemm shapes of group size 128, but the config [(]config[.]json: quantization_config[)] declares group size 64")
add_awq_malformed_test(awq_layout_mismatch awq.layout.mismatch ERROR
  "model[.]layers[.]0[.]self_attn[.]q_proj: the tensors have the gemv shapes [(]qweight [[]256, 32[]], scales [[]256, 8[]][)], but the config [(]config[.]json: quantization_config[)] declares version \"gemm\"")
add_awq_malformed_test(awq_scales_invalid awq.scales.invalid ERROR
  "tensor \"model[.]layers[.]1[.]mlp[.]gate_proj[.]scales\": scale -0 [(]f16 0x8000[)] at [[][01][]][[][0-9]+[]], expected a finite value > 0 [(]1 of 1536 scales are not[)]")
add_awq_malformed_test(awq_zero_point_not_symmetric awq.zero_point.not_symmetric ERROR
  "tensor \"model[.]layers[.]0[.]mlp[.]up_proj[.]qzeros\": zero point 9 at [[][01][]][[][0-9]+[]], expected 8 because the config [(]config[.]json: quantization_config[)] declares zero_point false")
add_awq_malformed_test(awq_qzeros_missing awq.qzeros.missing WARN
  "tensor \"model[.]layers[.]1[.]self_attn[.]v_proj[.]qzeros\": missing")
add_awq_malformed_test(awq_scales_padding awq.scales.padding WARN
  "tensor \"model[.]layers[.]0[.]mlp[.]down_proj[.]scales\": padding column [[][0-9]+[]][[]7[]] holds 1 [(]f16 0x3c00[)], expected 0")
add_awq_malformed_test(awq_qzeros_padding awq.qzeros.padding WARN
  "tensor \"model[.]layers[.]1[.]self_attn[.]q_proj[.]qzeros\": row [0-9]+, field 5 [(]word 0, bits 20[.][.]23[)] holds 3, expected 0")
add_awq_malformed_test(awq_fp16_overflow dequant.fp16_overflow ERROR
  "model[.]layers[.]0[.]self_attn[.]q_proj: weight [[][0-9]+[]][[][0-9]+[]] = scale 65504 x [(]q - z[)] -?[0-9]+ overflows f16 [(][|]w[|] > 65504[)]")
add_awq_malformed_test(awq_not_converted awq.not_converted PASS
  "linear \"model[.]layers[.]1[.]mlp[.]down_proj\" is stored in float [(]F32 [[]256, 768[]][)] and read as float")
add_awq_malformed_test(awq_not_converted_packed awq.not_converted.packed ERROR
  "linear \"model[.]layers[.]0[.]self_attn[.]q_proj\" is stored packed [(]model[.]layers[.]0[.]self_attn[.]q_proj[.]qweight[)], but config[.]json: quantization_config lists it in modules_to_not_convert")
add_awq_malformed_test(awq_unquantized awq.unquantized ERROR
  "linear \"model[.]layers[.]0[.]mlp[.]gate_proj\" is stored unquantized [(]F32 [[]768, 256[]][)], expected the AWQ gemm layout")

# eval and logits dequantize the linears they run, so they stop at the same errors
add_test(NAME integration.awq.awq_scales_invalid.eval
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;eval;${AWQ_CORPUS}/awq_scales_invalid;--task;wikitext2;--data;${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw;--windows;1"
          -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=model[.]layers[.]1[.]mlp[.]gate_proj[.]scales\": scale -0 [(]f16 0x8000[)]"
          -P ${AWQ_CHECK})
add_test(NAME integration.awq.awq_fp16_overflow.logits
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;logits;${AWQ_CORPUS}/awq_fp16_overflow;--ids;1,2,3;--out;${AWQ_DIR}/out/overflow.logits"
          -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=model[.]layers[.]0[.]self_attn[.]q_proj: weight [[][0-9]+[]][[][0-9]+[]] = scale 65504 x [(]q - z[)] -?[0-9]+ overflows f16"
          -P ${AWQ_CHECK})
set_tests_properties(integration.awq.awq_scales_invalid.eval integration.awq.awq_fp16_overflow.logits PROPERTIES
  LABELS "integration;awq;malformed" FIXTURES_REQUIRED awq_corpus TIMEOUT 120)
