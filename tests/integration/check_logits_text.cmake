# `qconform logits --text "Once upon a time"` must write the same bytes as --ids with the
# ids llama2.c used for that prompt (BOS, then the SentencePiece encoding).
execute_process(COMMAND ${QCONFORM} logits ${MODEL} --text "Once upon a time" --out ${WORK}/text.f32
  RESULT_VARIABLE text_result)
execute_process(COMMAND ${QCONFORM} logits ${MODEL} --ids 1,403,407,261,378 --out ${WORK}/ids.f32
  RESULT_VARIABLE ids_result)
if(NOT text_result EQUAL 0 OR NOT ids_result EQUAL 0)
  message(FATAL_ERROR "qconform logits failed: --text exit ${text_result}, --ids exit ${ids_result}")
endif()
execute_process(COMMAND ${COMPARE} ${WORK}/text.f32 ${WORK}/ids.f32 0 RESULT_VARIABLE compare_result)
if(NOT compare_result EQUAL 0)
  message(FATAL_ERROR "logits of --text and --ids differ")
endif()
