# Integration tests of logits and eval against independent goldens.

add_executable(compare_f32 ${CMAKE_CURRENT_SOURCE_DIR}/compare_f32.c)
target_link_libraries(compare_f32 PRIVATE qref)

set(FIXTURES ${PROJECT_SOURCE_DIR}/fixtures)
set(EVAL_WORK ${CMAKE_CURRENT_BINARY_DIR}/evaluation)
file(MAKE_DIRECTORY ${EVAL_WORK})

# Reads input_ids from a golden JSON as a comma-separated list.
function(golden_ids json_file out_var)
  file(READ ${json_file} golden)
  string(JSON count LENGTH "${golden}" input_ids)
  math(EXPR last "${count} - 1")
  set(ids "")
  foreach(i RANGE ${last})
    string(JSON id GET "${golden}" input_ids ${i})
    list(APPEND ids ${id})
  endforeach()
  list(JOIN ids "," joined)
  set(${out_var} ${joined} PARENT_SCOPE)
endfunction()

# qconform logits on stories260k against llama2.c's run.c (1e-4, the golden's stated precision).
golden_ids(${FIXTURES}/goldens/stories260k-once-upon-a-time.json stories_ids)
add_test(NAME integration.logits.stories260k_write
  COMMAND qconform logits ${FIXTURES}/models/stories260k --ids ${stories_ids} --out ${EVAL_WORK}/stories260k.f32)
add_test(NAME integration.logits.stories260k_llama2c
  COMMAND compare_f32 ${EVAL_WORK}/stories260k.f32 ${FIXTURES}/goldens/stories260k-once-upon-a-time.logits.f32 1e-4)
set_tests_properties(integration.logits.stories260k_write PROPERTIES
  LABELS "integration;logits" FIXTURES_SETUP logits_stories260k)
set_tests_properties(integration.logits.stories260k_llama2c PROPERTIES
  LABELS "integration;logits" FIXTURES_REQUIRED logits_stories260k)

# qconform logits on the AutoGPTQ artifact against AutoGPTQ's own unpacking (1e-3).
golden_ids(${FIXTURES}/goldens/synth256-autogptq-w4g128.json gptq_ids)
add_test(NAME integration.logits.autogptq_write
  COMMAND qconform logits ${FIXTURES}/models/synth256-autogptq-w4g128 --ids ${gptq_ids}
          --out ${EVAL_WORK}/autogptq.f32)
add_test(NAME integration.logits.autogptq_golden
  COMMAND compare_f32 ${EVAL_WORK}/autogptq.f32 ${FIXTURES}/goldens/synth256-autogptq-w4g128.logits.f32 1e-3)
set_tests_properties(integration.logits.autogptq_write PROPERTIES
  LABELS "integration;logits;gptq" FIXTURES_SETUP logits_autogptq)
set_tests_properties(integration.logits.autogptq_golden PROPERTIES
  LABELS "integration;logits;gptq" FIXTURES_REQUIRED logits_autogptq)

# qconform logits --text gives the same logits as the ids of the same text.
add_test(NAME integration.logits.text_equals_ids
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DCOMPARE=$<TARGET_FILE:compare_f32>
          -DMODEL=${FIXTURES}/models/stories260k -DWORK=${EVAL_WORK}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_logits_text.cmake)
set_tests_properties(integration.logits.text_equals_ids PROPERTIES LABELS "integration;logits")

# qconform eval reads the canonical zip like the raw file, and reports the protocol fields.
add_test(NAME integration.eval.raw_and_zip
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DMODEL=${FIXTURES}/models/stories260k
          -DRAW=${FIXTURES}/datasets/wikitext-2-raw/wiki.test.raw -DWORK=${EVAL_WORK}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_eval_zip.cmake)
set_tests_properties(integration.eval.raw_and_zip PROPERTIES LABELS "integration;eval")

# qconform report merge: three shards of a 30-window run give the single run's perplexity, and a
# missing shard is an error.
add_test(NAME integration.report.merge_shards
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DMODEL=${FIXTURES}/models/stories260k
          -DDATA=${FIXTURES}/datasets/wikitext-2-raw/wiki.test.raw -DWORK=${EVAL_WORK}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_report_merge.cmake)
set_tests_properties(integration.report.merge_shards PROPERTIES LABELS "integration;eval;report")

# qconform report summary: a verify report of the AutoGPTQ suite becomes a Markdown table and an
# SVG plot.
add_test(NAME integration.report.summary
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DSOURCE=${PROJECT_SOURCE_DIR} -DWORK=${EVAL_WORK}
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_report_summary.cmake)
set_tests_properties(integration.report.summary PROPERTIES LABELS "integration;report")
