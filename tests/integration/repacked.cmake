# Repacked layouts are refused by name, never misread: make_repacked_cases.c writes one snapshot
# per layout (its comment lists them), and verify and inspect must exit 3 with a message that
# names the layout.
set(REPACKED_DIR ${CMAKE_CURRENT_BINARY_DIR}/repacked)
set(REPACKED_CASES ${REPACKED_DIR}/cases)
file(MAKE_DIRECTORY ${REPACKED_DIR})

add_executable(make_repacked_cases ${CMAKE_CURRENT_SOURCE_DIR}/make_repacked_cases.c
                                   ${CMAKE_CURRENT_SOURCE_DIR}/case_support.c)
target_link_libraries(make_repacked_cases PRIVATE qref)
add_test(NAME integration.repacked.generate
  COMMAND make_repacked_cases ${PROJECT_SOURCE_DIR}/fixtures/models ${REPACKED_CASES})
set_tests_properties(integration.repacked.generate PROPERTIES
  LABELS "integration;repacked" FIXTURES_SETUP repacked_cases)

function(add_repacked_test case regex)
  set(output_dir ${REPACKED_DIR}/out/${case})
  add_test(NAME integration.repacked.${case}
    COMMAND ${CMAKE_COMMAND}
            "-DCOMMAND=$<TARGET_FILE:qconform>;verify;${REPACKED_CASES}/${case};--report;${output_dir}/report.json"
            -DEXPECTED_EXIT=3 "-DEXPECTED_OUTPUT=${regex}" -DOUTPUT_DIR=${output_dir}
            -DREPORT_JSON=${output_dir}/report.json -DEXPECTED_VERDICT=ERROR
            -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
  add_test(NAME integration.repacked.${case}.inspect
    COMMAND ${CMAKE_COMMAND} "-DCOMMAND=$<TARGET_FILE:qconform>;inspect;${REPACKED_CASES}/${case}"
            -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=${regex}" -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
  set_tests_properties(integration.repacked.${case} integration.repacked.${case}.inspect PROPERTIES
    LABELS "integration;repacked" FIXTURES_REQUIRED repacked_cases)
endfunction()

add_repacked_test(gptq-marlin "q_proj[.]B\" is stored in the Marlin-packed GPTQ [(]AutoGPTQ qlinear_marlin")
add_repacked_test(awq-marlin "q_proj[.]qweight\" has shape [[]16, 512[]] and no qzeros beside scales [[]2, 256[]]: the AWQ Marlin")
add_repacked_test(awq-gemv-fast "q_proj[.]scaled_zeros\" is stored in the AWQ GEMV_fast")
add_repacked_test(awq-gemv-fast-qzeros "q_proj[.]qzeros\" holds F16 zero points, as the AWQ GEMV_fast")
add_repacked_test(exl2 "is stored in the ExLlamaV2 [(]EXL2")
add_repacked_test(gptqmodel-dynamic "dynamic holds GPTQModel per-module overrides [(]first \"-:[.][*]down_proj\"[)]")
add_repacked_test(gptq-planar "checkpoint_format \"gptq_p\" names the GPTQModel planar")
add_repacked_test(gptq-6bit "bits 6: GPTQModel stores 5-, 6- and 7-bit GPTQ codes only in the GPTQModel planar")
