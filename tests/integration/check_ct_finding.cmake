# Runs a command through check_exit_code.cmake (exit code, output regex, JSON report verdict),
# then checks that the JSON report holds the finding: a check whose id is EXPECTED_ID, whose
# verdict is EXPECTED_VERDICT and whose message matches EXPECTED_OUTPUT.
#
#   cmake -DCOMMAND="qconform;verify;DIR;--report;FILE" -DEXPECTED_EXIT=3 -DEXPECTED_OUTPUT=REGEX
#         -DREPORT_JSON=FILE -DEXPECTED_VERDICT=ERROR -DEXPECTED_ID=ct.scale.invalid
#         [-DOUTPUT_DIR=DIR] [-DREPORT_JUNIT=FILE] -P check_ct_finding.cmake
if(NOT DEFINED EXPECTED_ID OR NOT DEFINED REPORT_JSON OR NOT DEFINED EXPECTED_VERDICT
   OR NOT DEFINED EXPECTED_OUTPUT)
  message(FATAL_ERROR "check_ct_finding.cmake needs EXPECTED_ID, REPORT_JSON, EXPECTED_VERDICT and "
                      "EXPECTED_OUTPUT besides the arguments of check_exit_code.cmake")
endif()

include(${CMAKE_CURRENT_LIST_DIR}/check_exit_code.cmake)

file(READ "${REPORT_JSON}" report)
string(JSON check_count LENGTH "${report}" checks)
set(found FALSE)
if(check_count GREATER 0)
  math(EXPR last "${check_count} - 1")
  foreach(i RANGE ${last})
    string(JSON check_id GET "${report}" checks ${i} id)
    string(JSON check_verdict GET "${report}" checks ${i} verdict)
    string(JSON check_message GET "${report}" checks ${i} message)
    if(check_id STREQUAL EXPECTED_ID AND check_verdict STREQUAL EXPECTED_VERDICT
       AND check_message MATCHES "${EXPECTED_OUTPUT}")
      set(found TRUE)
    endif()
  endforeach()
endif()
if(NOT found)
  message(FATAL_ERROR "${REPORT_JSON}: no ${EXPECTED_VERDICT} check with id ${EXPECTED_ID} has a message "
                      "matching '${EXPECTED_OUTPUT}'\n${report}")
endif()
message(STATUS "finding ${EXPECTED_ID} (${EXPECTED_VERDICT}) as expected")
