# A snapshot whose only tokenizer is a tokenizer.json of a layout qconform does not implement
# (here a normalizer, as SentencePiece-style files have) still opens: `logits --ids` works, and
# `logits --text` fails with exit code 3 and a message that names tokenizer.json.
#
#   cmake -DQCONFORM=PROGRAM -DMODEL=SNAPSHOT_DIR -DWORK=DIR -P check_tokenizer_unsupported.cmake
#
# MODEL must contain config.json and model.safetensors; the test snapshot is made under WORK.
set(snapshot ${WORK}/unsupported_tokenizer)
file(REMOVE_RECURSE ${snapshot})
file(MAKE_DIRECTORY ${snapshot})
file(COPY ${MODEL}/config.json ${MODEL}/model.safetensors DESTINATION ${snapshot})
file(WRITE ${snapshot}/tokenizer.json "{\"normalizer\": {\"type\": \"NFC\"}, \"model\": {\"type\": \"BPE\"}}")

execute_process(COMMAND ${QCONFORM} logits ${snapshot} --ids 1,403 --out ${WORK}/unsupported_ids.f32
  RESULT_VARIABLE ids_result ERROR_VARIABLE ids_stderr)
execute_process(COMMAND ${QCONFORM} logits ${snapshot} --text "Once" --out ${WORK}/unsupported_text.f32
  RESULT_VARIABLE text_result ERROR_VARIABLE text_stderr)

if("${ids_stderr}${text_stderr}" MATCHES "(Address|Leak|UndefinedBehavior)Sanitizer|runtime error:")
  message(FATAL_ERROR "sanitizer report\n--ids: ${ids_stderr}\n--text: ${text_stderr}")
endif()
if(NOT ids_result EQUAL 0)
  message(FATAL_ERROR "logits --ids: exit ${ids_result}, expected 0\nstderr: ${ids_stderr}")
endif()
if(NOT text_result EQUAL 3 OR NOT text_stderr MATCHES "tokenizer[.]json: normalizer is an object; supported: null")
  message(FATAL_ERROR "logits --text: exit ${text_result}, expected 3 and a message about tokenizer.json\n"
                      "stderr: ${text_stderr}")
endif()
