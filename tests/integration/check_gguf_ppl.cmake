# Runs `qconform eval MODEL --ctx 512 --chunks 100 --json` under the llama.cpp protocol and
# compares it with llama.cpp's value in GOLDEN (check_ppl_golden.c).
#
#   cmake -DQCONFORM=... -DCHECK=check_ppl_golden -DMODEL=... -DKEY=models/... -DDATA=...
#         -DGOLDEN=perplexity.json -DOUT=eval.json -P check_gguf_ppl.cmake
execute_process(COMMAND ${QCONFORM} eval ${MODEL} --task wikitext2 --data ${DATA} --protocol llamacpp --ctx 512
                        --chunks 100 --json
  RESULT_VARIABLE result OUTPUT_FILE ${OUT} ERROR_VARIABLE stderr)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "qconform eval exited ${result}: ${stderr}")
endif()
# 809289 tokens: llama.cpp's count for wiki.test.raw with this vocabulary (perplexity.json notes)
execute_process(COMMAND ${CHECK} ${OUT} ${GOLDEN} ${KEY} --tokens 809289
  RESULT_VARIABLE result OUTPUT_VARIABLE report ERROR_VARIABLE stderr)
message(STATUS "${report}")
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${KEY}: does not match llama.cpp (exit ${result})\n${report}${stderr}")
endif()
