# Runs a command and checks its exit code, and optionally its output and the files it writes,
# for ctest.
#
#   cmake -DCOMMAND="prog;arg1;arg2" -DEXPECTED_EXIT=3
#         [-DEXPECTED_STDERR=REGEX]   stderr must match
#         [-DEXPECTED_OUTPUT=REGEX]   stdout or stderr must match
#         [-DOUTPUT_DIR=DIR]          emptied before the run; afterwards it may hold only the
#                                     files named by REPORT_JSON and REPORT_JUNIT, so a
#                                     temporary file left behind or an output file written
#                                     despite the error fails the test
#         [-DREPORT_JSON=FILE -DEXPECTED_VERDICT=ERROR]
#                                     FILE must parse as JSON, and its "verdict" and
#                                     "exit_code" must equal EXPECTED_VERDICT and EXPECTED_EXIT;
#                                     with EXPECTED_OUTPUT, one of its checks of that verdict
#                                     must have a message matching EXPECTED_OUTPUT
#         [-DREPORT_JUNIT=FILE]       FILE must be a complete JUnit document with at least one
#                                     error
#         -P check_exit_code.cmake
#
# Output of AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer fails the test
# whatever the exit code.
if(NOT DEFINED COMMAND OR NOT DEFINED EXPECTED_EXIT)
  message(FATAL_ERROR "check_exit_code.cmake needs -DCOMMAND=... and -DEXPECTED_EXIT=...")
endif()

if(DEFINED OUTPUT_DIR)
  file(REMOVE_RECURSE "${OUTPUT_DIR}")
  file(MAKE_DIRECTORY "${OUTPUT_DIR}")
endif()

execute_process(COMMAND ${COMMAND}
  RESULT_VARIABLE exit_code
  OUTPUT_VARIABLE stdout
  ERROR_VARIABLE stderr)

if(stderr MATCHES "(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:")
  message(FATAL_ERROR "sanitizer report (exit code ${exit_code})\nstderr: ${stderr}")
endif()
if(NOT "${exit_code}" STREQUAL "${EXPECTED_EXIT}")
  message(FATAL_ERROR "exit code ${exit_code}, expected ${EXPECTED_EXIT}\n"
                      "stdout: ${stdout}\nstderr: ${stderr}")
endif()
if(DEFINED EXPECTED_STDERR AND NOT stderr MATCHES "${EXPECTED_STDERR}")
  message(FATAL_ERROR "stderr does not match '${EXPECTED_STDERR}'\nstderr: ${stderr}")
endif()
if(DEFINED EXPECTED_OUTPUT AND NOT stdout MATCHES "${EXPECTED_OUTPUT}"
   AND NOT stderr MATCHES "${EXPECTED_OUTPUT}")
  message(FATAL_ERROR "neither stdout nor stderr matches '${EXPECTED_OUTPUT}'\n"
                      "stdout: ${stdout}\nstderr: ${stderr}")
endif()

if(DEFINED OUTPUT_DIR)
  set(expected_files "")
  foreach(report IN ITEMS ${REPORT_JSON} ${REPORT_JUNIT})
    get_filename_component(name "${report}" NAME)
    list(APPEND expected_files "${name}")
  endforeach()
  list(SORT expected_files)
  file(GLOB found_files LIST_DIRECTORIES true RELATIVE "${OUTPUT_DIR}" "${OUTPUT_DIR}/*")
  list(SORT found_files)
  if(NOT "${found_files}" STREQUAL "${expected_files}")
    message(FATAL_ERROR "${OUTPUT_DIR} holds [${found_files}], expected [${expected_files}]")
  endif()
endif()

if(DEFINED REPORT_JSON)
  if(NOT EXISTS "${REPORT_JSON}")
    message(FATAL_ERROR "${REPORT_JSON}: the JSON report was not written")
  endif()
  file(READ "${REPORT_JSON}" report)
  string(JSON verdict ERROR_VARIABLE json_error GET "${report}" verdict)
  if(json_error)
    message(FATAL_ERROR "${REPORT_JSON}: not a complete JSON report: ${json_error}\n${report}")
  endif()
  if(DEFINED EXPECTED_VERDICT AND NOT verdict STREQUAL EXPECTED_VERDICT)
    message(FATAL_ERROR "${REPORT_JSON}: verdict ${verdict}, expected ${EXPECTED_VERDICT}")
  endif()
  string(JSON report_exit_code ERROR_VARIABLE json_error GET "${report}" exit_code)
  if(json_error OR NOT report_exit_code STREQUAL EXPECTED_EXIT)
    message(FATAL_ERROR "${REPORT_JSON}: exit_code '${report_exit_code}', expected ${EXPECTED_EXIT} ${json_error}")
  endif()

  # The message the program printed must also be recorded in the report.
  if(DEFINED EXPECTED_OUTPUT AND DEFINED EXPECTED_VERDICT)
    string(JSON check_count ERROR_VARIABLE json_error LENGTH "${report}" checks)
    if(json_error)
      message(FATAL_ERROR "${REPORT_JSON}: no \"checks\" array: ${json_error}")
    endif()
    set(recorded FALSE)
    if(check_count GREATER 0)
      math(EXPR last "${check_count} - 1")
      foreach(i RANGE ${last})
        string(JSON check_verdict GET "${report}" checks ${i} verdict)
        string(JSON check_message GET "${report}" checks ${i} message)
        if(check_verdict STREQUAL EXPECTED_VERDICT AND check_message MATCHES "${EXPECTED_OUTPUT}")
          set(recorded TRUE)
        endif()
      endforeach()
    endif()
    if(NOT recorded)
      message(FATAL_ERROR "${REPORT_JSON}: no ${EXPECTED_VERDICT} check has a message matching "
                          "'${EXPECTED_OUTPUT}'\n${report}")
    endif()
  endif()
endif()

if(DEFINED REPORT_JUNIT)
  if(NOT EXISTS "${REPORT_JUNIT}")
    message(FATAL_ERROR "${REPORT_JUNIT}: the JUnit report was not written")
  endif()
  file(READ "${REPORT_JUNIT}" junit)
  if(NOT junit MATCHES "^<\\?xml [^\n]*\n<testsuites>\n.*</testsuites>\n$")
    message(FATAL_ERROR "${REPORT_JUNIT}: not a complete JUnit document\n${junit}")
  endif()
  if(NOT junit MATCHES "<testsuite [^>]*errors=\"[1-9][0-9]*\"")
    message(FATAL_ERROR "${REPORT_JUNIT}: the test suite records no error\n${junit}")
  endif()
endif()

message(STATUS "exit code ${exit_code} as expected")
