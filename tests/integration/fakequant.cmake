# Fake-quantized snapshots: `qconform quantize --format fake` writes RTN fake quantization of
# synth256 (the bits and group size are the quantizer's settings), and inspect must detect
# exactly those from the values alone (check_fakequant.cmake says what each mode checks).
set(FAKEQUANT_DIR ${CMAKE_CURRENT_BINARY_DIR}/fakequant)
set(FAKEQUANT_REF ${PROJECT_SOURCE_DIR}/fixtures/models/synth256)
file(MAKE_DIRECTORY ${FAKEQUANT_DIR})

function(add_fakequant_test name mode)
  add_test(NAME integration.fakequant.${name}
    COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DREF=${FAKEQUANT_REF}
            -DWORK=${FAKEQUANT_DIR}/${name} -DMODE=${mode} ${ARGN}
            -P ${CMAKE_CURRENT_SOURCE_DIR}/check_fakequant.cmake)
  set_tests_properties(integration.fakequant.${name} PROPERTIES LABELS "integration;fakequant" TIMEOUT 300)
endfunction()

foreach(bits 2 3 4 8)
  foreach(group 32 64 128 -1)
    add_fakequant_test(f16_w${bits}g${group} detect -DBITS=${bits} -DGROUP=${group} -DDTYPE=f16)
  endforeach()
endforeach()
foreach(case 2:128 4:128 4:-1 8:64 8:-1)
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 bits)
  list(GET parts 1 group)
  add_fakequant_test(bf16_w${bits}g${group} detect -DBITS=${bits} -DGROUP=${group} -DDTYPE=bf16)
endforeach()
add_fakequant_test(claim claim)
add_fakequant_test(suite suite -DDATA=${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw)

# The float originals are not fake-quantized.
foreach(model synth256 stories260k)
  add_test(NAME integration.fakequant.original_${model}
    COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform>
            "-DARGS=inspect;${PROJECT_SOURCE_DIR}/fixtures/models/${model};--json" -DID=fakequant.none -DVERDICT=PASS
            -DEXPECTED_EXIT=0 "-DMESSAGE=none of the [0-9]+ float linears lies on a quantization grid"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/check_finding.cmake)
  set_tests_properties(integration.fakequant.original_${model} PROPERTIES LABELS "integration;fakequant")
endforeach()

# --dtype applies to --format fake only.
add_test(NAME integration.fakequant.usage_dtype
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;quantize;${FAKEQUANT_REF};--method;rtn;--bits;4;--format;gptq;--dtype;bf16;--out;${FAKEQUANT_DIR}/unused"
          -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=--dtype applies to --format fake"
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
set_tests_properties(integration.fakequant.usage_dtype PROPERTIES LABELS "integration;fakequant")

# One malformed artifact per warning finding: make_fakequant_cases replaces one linear, drawn
# from a fixed seed, of a 4-bit group-128 snapshot by the F16-rounded float original (partial)
# or by the same linear of a 3-bit group-64 snapshot (mixed).
add_executable(make_fakequant_cases make_fakequant_cases.c case_support.c)
target_link_libraries(make_fakequant_cases PRIVATE qref)
foreach(base w4g128:4:128 w3g64:3:64)
  string(REPLACE ":" ";" parts "${base}")
  list(GET parts 0 name)
  list(GET parts 1 bits)
  list(GET parts 2 group)
  add_test(NAME integration.fakequant.cases_quantize_${name}
    COMMAND qconform quantize ${FAKEQUANT_REF} --method rtn --bits ${bits} --group ${group} --format fake
            --out ${FAKEQUANT_DIR}/cases-${name} --force)
  set_tests_properties(integration.fakequant.cases_quantize_${name} PROPERTIES
    LABELS "integration;fakequant" FIXTURES_SETUP fakequant_cases_${name})
endforeach()
add_test(NAME integration.fakequant.cases_generate
  COMMAND make_fakequant_cases ${FAKEQUANT_DIR}/cases-w4g128 ${FAKEQUANT_DIR}/cases-w3g64 ${FAKEQUANT_REF}
          ${FAKEQUANT_DIR}/cases)
set_tests_properties(integration.fakequant.cases_generate PROPERTIES
  LABELS "integration;fakequant" FIXTURES_REQUIRED "fakequant_cases_w4g128;fakequant_cases_w3g64"
  FIXTURES_SETUP fakequant_cases)
foreach(case
    "partial|fakequant.partial|13 of 14 float linears are fake-quantized [(][^)]*4-bit groups of 128[^)]*[)] but 1 is not [(]first: model[.]layers[.][01][.][a-z_.]+[)]"
    "mixed|fakequant.mixed|fake-quantized linears disagree: .* but 1 other differs [(]first: model[.]layers[.][01][.][a-z_.]+, 3-bit groups of 64")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 name)
  list(GET parts 1 id)
  list(GET parts 2 message)
  add_test(NAME integration.fakequant.${name}
    COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform>
            "-DARGS=verify;${FAKEQUANT_DIR}/cases/${name};--reference;${FAKEQUANT_REF}"
            -DREPORT=${FAKEQUANT_DIR}/cases/${name}.json -DID=${id} -DVERDICT=WARN "-DMESSAGE=${message}"
            -DEXPECTED_EXIT=0 -P ${CMAKE_CURRENT_SOURCE_DIR}/check_finding.cmake)
  set_tests_properties(integration.fakequant.${name} PROPERTIES
    LABELS "integration;fakequant" FIXTURES_REQUIRED fakequant_cases TIMEOUT 300)
endforeach()

# The INFO finding of each fake-quantized linear names its grid.
add_test(NAME integration.fakequant.linear_finding
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform>
          "-DARGS=inspect;${FAKEQUANT_DIR}/cases-w3g64;--json" -DID=fakequant.linear -DVERDICT=PASS -DEXPECTED_EXIT=0
          "-DMESSAGE=linear model[.]layers[.]1[.]mlp[.]down_proj: 3-bit groups of 64, 3[.]5 effective bits"
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_finding.cmake)
set_tests_properties(integration.fakequant.linear_finding PROPERTIES
  LABELS "integration;fakequant" FIXTURES_REQUIRED fakequant_cases_w3g64)
