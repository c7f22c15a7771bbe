# Runs `qconform verify` on a malformed bitsandbytes artifact and checks that the JSON report
# holds a check with the expected finding id, verdict and message, and that the exit code and
# overall verdict follow from that verdict.
#
#   cmake -DQCONFORM=prog -DARTIFACT=dir -DREPORT=file.json -DID=bnb.scb.zero -DVERDICT=WARN
#         -DEXPECTED_EXIT=0 -DEXPECTED_OVERALL=WARN -DMESSAGE=REGEX -P check_bnb_finding.cmake
#
# Output of AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer fails the test.
foreach(var QCONFORM ARTIFACT REPORT ID VERDICT EXPECTED_EXIT EXPECTED_OVERALL MESSAGE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_bnb_finding.cmake needs -D${var}=...")
  endif()
endforeach()

file(REMOVE "${REPORT}")
execute_process(COMMAND ${QCONFORM} verify ${ARTIFACT} --report ${REPORT}
  RESULT_VARIABLE exit_code OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(stderr MATCHES "(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:")
  message(FATAL_ERROR "sanitizer report (exit code ${exit_code})\nstderr: ${stderr}")
endif()
if(NOT "${exit_code}" STREQUAL "${EXPECTED_EXIT}")
  message(FATAL_ERROR "exit code ${exit_code}, expected ${EXPECTED_EXIT}\nstdout: ${stdout}\nstderr: ${stderr}")
endif()

file(READ "${REPORT}" report)
string(JSON overall ERROR_VARIABLE json_error GET "${report}" verdict)
if(json_error OR NOT overall STREQUAL EXPECTED_OVERALL)
  message(FATAL_ERROR "${REPORT}: verdict '${overall}', expected ${EXPECTED_OVERALL} ${json_error}")
endif()
string(JSON count LENGTH "${report}" checks)
set(found FALSE)
set(seen "")
if(count GREATER 0)
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    string(JSON check_id GET "${report}" checks ${i} id)
    string(JSON check_verdict GET "${report}" checks ${i} verdict)
    string(JSON check_message GET "${report}" checks ${i} message)
    string(APPEND seen "\n  ${check_id} ${check_verdict}: ${check_message}")
    if(check_id STREQUAL ID AND check_verdict STREQUAL VERDICT AND check_message MATCHES "${MESSAGE}")
      set(found TRUE)
    endif()
  endforeach()
endif()
if(NOT found)
  message(FATAL_ERROR "${REPORT}: no ${VERDICT} check ${ID} with a message matching '${MESSAGE}'; checks:${seen}")
endif()
message(STATUS "${ID} ${VERDICT}, exit code ${exit_code} as expected")
