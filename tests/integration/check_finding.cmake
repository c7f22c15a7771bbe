# Runs a qconform command and checks that the finding it reports has the expected id, verdict
# and message, and that the exit code (and the overall verdict) follow.
#
#   cmake -DQCONFORM=prog "-DARGS=verify;MODEL;--adapter;DIR" -DREPORT=file.json
#         -DID=lora.rank -DVERDICT=ERROR -DMESSAGE=REGEX -DEXPECTED_EXIT=3
#         [-DEXPECTED_OVERALL=ERROR] -P check_finding.cmake
#
# With REPORT, "--report REPORT" is appended to ARGS and the checks are read from that JSON
# report (verify). Without it, ARGS must print inspect's JSON (inspect ARTIFACT --json) and the
# findings are read from its "findings" array. Output of AddressSanitizer, LeakSanitizer or
# UndefinedBehaviorSanitizer fails the test.
foreach(var QCONFORM ARGS ID VERDICT MESSAGE EXPECTED_EXIT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_finding.cmake needs -D${var}=...")
  endif()
endforeach()

set(command ${QCONFORM} ${ARGS})
if(DEFINED REPORT)
  file(REMOVE "${REPORT}")
  get_filename_component(report_dir "${REPORT}" DIRECTORY)
  file(MAKE_DIRECTORY "${report_dir}")
  list(APPEND command --report ${REPORT})
endif()
execute_process(COMMAND ${command} RESULT_VARIABLE exit_code OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(stderr MATCHES "(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:")
  message(FATAL_ERROR "sanitizer report (exit code ${exit_code})\nstderr: ${stderr}")
endif()
if(NOT "${exit_code}" STREQUAL "${EXPECTED_EXIT}")
  message(FATAL_ERROR "exit code ${exit_code}, expected ${EXPECTED_EXIT}\nstdout: ${stdout}\nstderr: ${stderr}")
endif()

if(DEFINED REPORT)
  file(READ "${REPORT}" document)
  set(list_key checks)
  if(DEFINED EXPECTED_OVERALL)
    string(JSON overall ERROR_VARIABLE json_error GET "${document}" verdict)
    if(json_error OR NOT overall STREQUAL EXPECTED_OVERALL)
      message(FATAL_ERROR "${REPORT}: verdict '${overall}', expected ${EXPECTED_OVERALL} ${json_error}")
    endif()
  endif()
else()
  set(document "${stdout}")
  set(list_key findings)
endif()

string(JSON count ERROR_VARIABLE json_error LENGTH "${document}" ${list_key})
if(json_error)
  message(FATAL_ERROR "no \"${list_key}\" array: ${json_error}\nstdout: ${stdout}\nstderr: ${stderr}")
endif()
set(found FALSE)
set(seen "")
if(count GREATER 0)
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    string(JSON check_id GET "${document}" ${list_key} ${i} id)
    string(JSON check_verdict GET "${document}" ${list_key} ${i} verdict)
    string(JSON check_message GET "${document}" ${list_key} ${i} message)
    string(APPEND seen "\n  ${check_id} ${check_verdict}: ${check_message}")
    if(check_id STREQUAL ID AND check_verdict STREQUAL VERDICT AND check_message MATCHES "${MESSAGE}")
      set(found TRUE)
    endif()
  endforeach()
endif()
if(NOT found)
  message(FATAL_ERROR "no ${VERDICT} ${list_key} entry ${ID} with a message matching '${MESSAGE}'; found:${seen}")
endif()
message(STATUS "${ID} ${VERDICT}, exit code ${exit_code} as expected")
