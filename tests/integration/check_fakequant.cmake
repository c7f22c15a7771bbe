# Fake-quantized snapshots written by `qconform quantize --format fake` and what inspect and
# verify say about them.
#
#   MODE=detect  -DBITS=4 -DGROUP=128 -DDTYPE=f16: quantize REF, then inspect --json must report
#                method "fake-quant" with those bits and group size and effective bits
#                BITS + 32 / (GROUP, or the row width for -1), and every linear's weight in the
#                tensor table with the same bits and group size.
#   MODE=claim   quantize REF 4-bit group 128, set config.json's qconform.fake_quant.bits to 3:
#                verify must exit 0 with a WARN check fakequant.claim; then a copy of REF whose
#                _name_or_path says "w8a16": fakequant.claim because no linear lies on a grid.
#   MODE=suite   quantize REF 4-bit group 128; verify with a suite whose fake-quant cell of the
#                same bits and group runs (not SKIP) and whose 3-bit cell is skipped.
#
#   cmake -DQCONFORM=prog -DREF=dir -DWORK=dir -DMODE=... [-DBITS -DGROUP -DDTYPE -DDATA]
#         -P check_fakequant.cmake
foreach(var QCONFORM REF WORK MODE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_fakequant.cmake needs -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run_checked output_var expected_exit)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(err MATCHES "(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:" OR NOT code EQUAL expected_exit)
    message(FATAL_ERROR "${ARGN}: exit code ${code}, expected ${expected_exit}\n${out}\n${err}")
  endif()
  set(${output_var} "${out}" PARENT_SCOPE)
endfunction()

# The JSON report's check with this id and verdict, or a fatal error listing the checks.
function(require_check report id verdict)
  string(JSON count LENGTH "${report}" checks)
  math(EXPR last "${count} - 1")
  set(seen "")
  foreach(i RANGE ${last})
    string(JSON check_id GET "${report}" checks ${i} id)
    string(JSON check_verdict GET "${report}" checks ${i} verdict)
    string(JSON check_message GET "${report}" checks ${i} message)
    string(APPEND seen "\n  ${check_id} ${check_verdict}: ${check_message}")
    if(check_id STREQUAL id AND check_verdict STREQUAL verdict)
      message(STATUS "${id} ${verdict}: ${check_message}")
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "no ${verdict} check ${id}; checks:${seen}")
endfunction()

if(MODE STREQUAL "detect")
  run_checked(out 0 ${QCONFORM} quantize ${REF} --method rtn --bits ${BITS} --group ${GROUP} --format fake
              --dtype ${DTYPE} --out ${WORK}/model)
  run_checked(json 0 ${QCONFORM} inspect ${WORK}/model --json)
  string(JSON method GET "${json}" quantization method)
  string(JSON bits GET "${json}" quantization bits)
  string(JSON group GET "${json}" quantization group_size)
  string(JSON effective GET "${json}" quantization effective_bits)
  string(JSON torch_dtype GET "${json}" quantization torch_dtype)
  if(NOT method STREQUAL "fake-quant" OR NOT bits EQUAL BITS OR NOT group EQUAL GROUP)
    message(FATAL_ERROR "inspect reports method ${method}, ${bits} bits, group ${group}; expected fake-quant, "
                        "${BITS} bits, group ${GROUP}")
  endif()
  # effective bits in millionths: BITS + 32 / GROUP; per row, the mean over synth256's weights,
  # of which 589,824 sit in 256-wide rows (32 / 256) and 196,608 in down_proj's 768-wide rows
  # (32 / 768): (589824 * 0.125 + 196608 * 0.041667) / 786432 = 0.1041667
  if(GROUP EQUAL -1)
    math(EXPR expected "${BITS} * 1000000 + 104166")
  else()
    math(EXPR expected "${BITS} * 1000000 + 32000000 / ${GROUP}")
  endif()
  if(NOT effective MATCHES "^([0-9]+)(\\.([0-9]*))?$")
    message(FATAL_ERROR "effective bits '${effective}' is not a decimal number")
  endif()
  set(whole "${CMAKE_MATCH_1}")
  set(fraction "${CMAKE_MATCH_3}000000")
  string(SUBSTRING "${fraction}" 0 6 fraction)
  string(REGEX REPLACE "^0+([0-9])" "\\1" fraction "${fraction}")
  math(EXPR measured "${whole} * 1000000 + ${fraction}")
  math(EXPR difference "${measured} - ${expected}")
  if(difference GREATER 1 OR difference LESS -1)
    message(FATAL_ERROR "effective bits ${effective}, expected ${expected} millionths")
  endif()
  set(expected_dtype float16)
  if(DTYPE STREQUAL "bf16")
    set(expected_dtype bfloat16)
  endif()
  if(NOT torch_dtype STREQUAL expected_dtype)
    message(FATAL_ERROR "torch_dtype ${torch_dtype}, expected ${expected_dtype}")
  endif()
  string(JSON count LENGTH "${json}" tensors)
  math(EXPR last "${count} - 1")
  set(linears 0)
  foreach(i RANGE ${last})
    string(JSON name GET "${json}" tensors ${i} name)
    if(name MATCHES "_proj\\.weight$")
      string(JSON tensor_bits GET "${json}" tensors ${i} bits)
      string(JSON tensor_group GET "${json}" tensors ${i} group_size)
      if(NOT tensor_bits EQUAL BITS OR NOT tensor_group EQUAL GROUP)
        message(FATAL_ERROR "${name}: ${tensor_bits} bits, group ${tensor_group} in the tensor table")
      endif()
      math(EXPR linears "${linears} + 1")
    endif()
  endforeach()
  if(NOT linears EQUAL 14)
    message(FATAL_ERROR "${linears} linear weights in the tensor table, expected 14")
  endif()
  message(STATUS "fake-quant ${bits}-bit group ${group}, ${effective} effective bits, ${torch_dtype}")

elseif(MODE STREQUAL "claim")
  run_checked(out 0 ${QCONFORM} quantize ${REF} --method rtn --bits 4 --group 128 --format fake --out ${WORK}/model)
  file(READ ${WORK}/model/config.json config)
  string(JSON config SET "${config}" qconform fake_quant bits 3)
  file(WRITE ${WORK}/model/config.json "${config}")
  run_checked(out 0 ${QCONFORM} verify ${WORK}/model --report ${WORK}/report.json --quiet)
  file(READ ${WORK}/report.json report)
  require_check("${report}" fakequant.claim WARN)
  string(JSON verdict GET "${report}" verdict)
  if(NOT verdict STREQUAL "WARN")
    message(FATAL_ERROR "overall verdict ${verdict}, expected WARN")
  endif()

  # a float copy of REF whose name claims 8-bit weights
  file(MAKE_DIRECTORY ${WORK}/named)
  file(COPY ${REF}/model.safetensors ${REF}/tokenizer.model DESTINATION ${WORK}/named)
  file(READ ${REF}/config.json config)
  string(JSON config SET "${config}" _name_or_path "\"org/synth256-w8a16\"")
  file(WRITE ${WORK}/named/config.json "${config}")
  run_checked(out 0 ${QCONFORM} verify ${WORK}/named --report ${WORK}/named.json --quiet)
  file(READ ${WORK}/named.json report)
  require_check("${report}" fakequant.claim WARN)
  require_check("${report}" fakequant.none PASS)

elseif(MODE STREQUAL "suite")
  run_checked(out 0 ${QCONFORM} quantize ${REF} --method rtn --bits 4 --group 128 --format fake --out ${WORK}/model)
  set(cell_template [=[
    {"id": "@ID@", "method": "fake-quant", "bits": @BITS@, "group_size": 128, "sym": false,
     "benchmark": "wikitext2", "metric": "ppl", "windows": 1,
     "band": {"reference": "reference-model", "source": "the reference model on the same window",
              "relative": [-0.5, 1.0],
              "rationale": "4-bit RTN moves synth256's perplexity by far less than this; the test checks that the cell applies"}}]=])
  string(REPLACE "@ID@" "fake-w4g128" cell4 "${cell_template}")
  string(REPLACE "@BITS@" "4" cell4 "${cell4}")
  string(REPLACE "@ID@" "fake-w3g128" cell3 "${cell_template}")
  string(REPLACE "@BITS@" "3" cell3 "${cell3}")
  file(WRITE ${WORK}/suite.json "{\"schema\": \"qconform-suite/1\", \"name\": \"fake-quant-match\",
  \"description\": \"cells that match a fake-quantized artifact by the bits and group size its values show\",
  \"model\": \"synth256\", \"reference\": \"${REF}\", \"datasets\": {\"wikitext2\": \"${DATA}\"},
  \"perplexity\": {\"protocol\": \"study\", \"seqlen\": 128}, \"cells\": [${cell4}, ${cell3}]}\n")
  run_checked(out 0 ${QCONFORM} verify ${WORK}/model --suite ${WORK}/suite.json --report ${WORK}/report.json --quiet)
  file(READ ${WORK}/report.json report)
  string(JSON id0 GET "${report}" cells 0 id)
  string(JSON verdict0 GET "${report}" cells 0 verdict)
  string(JSON id1 GET "${report}" cells 1 id)
  string(JSON verdict1 GET "${report}" cells 1 verdict)
  string(JSON message1 GET "${report}" cells 1 message)
  if(NOT id0 STREQUAL "fake-w4g128" OR NOT verdict0 STREQUAL "PASS")
    message(FATAL_ERROR "cell ${id0}: ${verdict0}, expected fake-w4g128 PASS")
  endif()
  if(NOT id1 STREQUAL "fake-w3g128" OR NOT verdict1 STREQUAL "SKIP" OR
     NOT message1 MATCHES "the cell checks fake-quant 3-bit group 128 .*the artifact is fake-quant 4-bit group 128")
    message(FATAL_ERROR "cell ${id1}: ${verdict1} (${message1}), expected a SKIP naming both bit widths")
  endif()
  message(STATUS "fake-w4g128 PASS, fake-w3g128 SKIP: ${message1}")
else()
  message(FATAL_ERROR "check_fakequant.cmake: unknown MODE ${MODE}")
endif()
