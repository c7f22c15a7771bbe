# Runs `qconform eval` on 30 windows whole and as shards 0/3, 1/3, 2/3, merges the shards with
# `qconform report merge`, and checks that the merged perplexity equals the whole run's to 12
# significant digits (the sums are added in another order) with the same token and window
# counts; then
# checks that leaving out a shard exits 3 naming it.
execute_process(COMMAND ${QCONFORM} eval ${MODEL} --task wikitext2 --data ${DATA} --windows 30 --json
  RESULT_VARIABLE result OUTPUT_VARIABLE whole)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "the whole run exited ${result}")
endif()
set(shards "")
foreach(i 0 1 2)
  execute_process(COMMAND ${QCONFORM} eval ${MODEL} --task wikitext2 --data ${DATA} --windows 30 --shard ${i}/3 --json
    RESULT_VARIABLE result OUTPUT_FILE ${WORK}/shard${i}.json)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "shard ${i}/3 exited ${result}")
  endif()
  list(APPEND shards ${WORK}/shard${i}.json)
endforeach()
execute_process(COMMAND ${QCONFORM} report merge ${shards} --json RESULT_VARIABLE result OUTPUT_VARIABLE merged)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "report merge exited ${result}")
endif()
string(JSON whole_ppl GET "${whole}" ppl)
string(JSON merged_ppl GET "${merged}" ppl)
foreach(key windows_evaluated tokens_scored windows)
  string(JSON a GET "${whole}" ${key})
  string(JSON b GET "${merged}" ${key})
  if(NOT a EQUAL b)
    message(FATAL_ERROR "${key}: ${b} merged, ${a} from the whole run")
  endif()
endforeach()
# CMake has no floating-point arithmetic: compare the first 12 significant digits as text
string(SUBSTRING "${whole_ppl}" 0 13 whole_digits)
string(SUBSTRING "${merged_ppl}" 0 13 merged_digits)
if(NOT whole_digits STREQUAL merged_digits)
  message(FATAL_ERROR "merged ppl ${merged_ppl}, whole run ${whole_ppl}")
endif()
execute_process(COMMAND ${QCONFORM} report merge ${WORK}/shard0.json ${WORK}/shard2.json
  RESULT_VARIABLE result ERROR_VARIABLE stderr)
if(NOT result EQUAL 3 OR NOT stderr MATCHES "shard 1/3 is missing")
  message(FATAL_ERROR "a missing shard: exit ${result}, stderr ${stderr}")
endif()
