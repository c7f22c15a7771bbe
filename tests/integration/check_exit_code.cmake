# Runs a command and checks its exit code, and optionally its stderr, for ctest.
#
#   cmake -DCOMMAND="prog;arg1;arg2" -DEXPECTED_EXIT=3 [-DEXPECTED_STDERR=REGEX]
#         -P check_exit_code.cmake
if(NOT DEFINED COMMAND OR NOT DEFINED EXPECTED_EXIT)
  message(FATAL_ERROR "check_exit_code.cmake needs -DCOMMAND=... and -DEXPECTED_EXIT=...")
endif()

execute_process(COMMAND ${COMMAND}
  RESULT_VARIABLE exit_code
  OUTPUT_VARIABLE stdout
  ERROR_VARIABLE stderr)

if(NOT "${exit_code}" STREQUAL "${EXPECTED_EXIT}")
  message(FATAL_ERROR "exit code ${exit_code}, expected ${EXPECTED_EXIT}\n"
                      "stdout: ${stdout}\nstderr: ${stderr}")
endif()
if(DEFINED EXPECTED_STDERR AND NOT stderr MATCHES "${EXPECTED_STDERR}")
  message(FATAL_ERROR "stderr does not match '${EXPECTED_STDERR}'\nstderr: ${stderr}")
endif()
message(STATUS "exit code ${exit_code} as expected")
