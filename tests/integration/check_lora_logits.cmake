# Checks a LoRA merge with a known answer: the logits of BASE with ADAPTER must equal those of
# EXPECTED_MODEL bit for bit (compare_f32 with tolerance 0), and must differ from BASE's own
# logits (VERSUS_BASE=differ) or equal them (VERSUS_BASE=same).
#
#   cmake -DQCONFORM=prog -DCOMPARE=compare_f32 -DBASE=dir -DADAPTER=dir -DEXPECTED_MODEL=dir
#         -DIDS=1,2,3 -DVERSUS_BASE=differ|same -DWORK=dir -P check_lora_logits.cmake
foreach(var QCONFORM COMPARE BASE ADAPTER EXPECTED_MODEL IDS VERSUS_BASE WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_lora_logits.cmake needs -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run_checked)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(err MATCHES "(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:" OR NOT code EQUAL 0)
    message(FATAL_ERROR "${ARGN}: exit code ${code}\n${out}\n${err}")
  endif()
endfunction()

run_checked(${QCONFORM} logits ${BASE} --adapter ${ADAPTER} --ids ${IDS} --out ${WORK}/merged.f32)
run_checked(${QCONFORM} logits ${EXPECTED_MODEL} --ids ${IDS} --out ${WORK}/expected.f32)
run_checked(${QCONFORM} logits ${BASE} --ids ${IDS} --out ${WORK}/base.f32)

execute_process(COMMAND ${COMPARE} ${WORK}/merged.f32 ${WORK}/expected.f32 0 RESULT_VARIABLE code OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(NOT code EQUAL 0)
  message(FATAL_ERROR "the merged logits differ from ${EXPECTED_MODEL}'s: ${out}${err}")
endif()
execute_process(COMMAND ${COMPARE} ${WORK}/merged.f32 ${WORK}/base.f32 0 RESULT_VARIABLE code OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(VERSUS_BASE STREQUAL "differ" AND code EQUAL 0)
  message(FATAL_ERROR "the merged logits equal the base model's, so the adapter was not applied: ${out}")
elseif(VERSUS_BASE STREQUAL "same" AND NOT code EQUAL 0)
  message(FATAL_ERROR "the merged logits differ from the base model's: ${out}${err}")
endif()
message(STATUS "merged logits match ${EXPECTED_MODEL}; versus the base: ${VERSUS_BASE}")
