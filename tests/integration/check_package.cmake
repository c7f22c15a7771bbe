# Configures tests/integration/package against the qconform build folder and checks that the
# suite's cell was registered as a ctest test through the exported qconform_add_suite().
file(REMOVE_RECURSE "${WORK_DIR}")
execute_process(
  COMMAND ${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}" -Dqconform_DIR=${BUILD_DIR} -DSUITE=${SUITE}
  RESULT_VARIABLE configure_result OUTPUT_VARIABLE configure_output ERROR_VARIABLE configure_output)
if(NOT configure_result EQUAL 0)
  message(FATAL_ERROR "configuring the package user failed:\n${configure_output}")
endif()
execute_process(COMMAND ${CMAKE_CTEST_COMMAND} --test-dir "${WORK_DIR}" -N -L external
  RESULT_VARIABLE list_result OUTPUT_VARIABLE list_output)
if(NOT list_output MATCHES "suite\\.synth256-autogptq\\.gptq-w4g128-golden-logits")
  message(FATAL_ERROR "the suite cell is not registered:\n${list_output}")
endif()
message(STATUS "package user registered: ${list_output}")
