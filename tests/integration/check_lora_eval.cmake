# Checks that eval with an adapter whose lora_B matrices are zero prints exactly the line of
# the base model (same perplexity, protocol and windows).
#
#   cmake -DQCONFORM=prog -DBASE=dir -DADAPTER=dir -DDATA=wiki.test.raw -P check_lora_eval.cmake
foreach(var QCONFORM BASE ADAPTER DATA)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_lora_eval.cmake needs -D${var}=...")
  endif()
endforeach()
set(options --task wikitext2 --data ${DATA} --windows 2 --seqlen 128)
execute_process(COMMAND ${QCONFORM} eval ${BASE} ${options} RESULT_VARIABLE base_code OUTPUT_VARIABLE base_line
                ERROR_VARIABLE base_err)
execute_process(COMMAND ${QCONFORM} eval ${BASE} --adapter ${ADAPTER} ${options} RESULT_VARIABLE code
                OUTPUT_VARIABLE line ERROR_VARIABLE err)
if(NOT base_code EQUAL 0 OR NOT code EQUAL 0 OR err MATCHES "Sanitizer|runtime error:")
  message(FATAL_ERROR "eval failed: ${base_code} ${code}\n${base_err}\n${err}")
endif()
if(NOT line MATCHES "^wikitext2 ppl [0-9.]+ " OR NOT line STREQUAL base_line)
  message(FATAL_ERROR "eval with the adapter printed\n${line}but the base model\n${base_line}")
endif()
message(STATUS "${line}")
