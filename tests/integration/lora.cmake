# PEFT LoRA adapters on synth256: merges with known answers through logits and eval, and one
# adapter per lora.* finding id through verify --adapter. make_lora_cases.c writes the adapters
# from a fixed seed and says what each one holds.
set(LORA_DIR ${CMAKE_CURRENT_BINARY_DIR}/lora)
set(LORA_CASES ${LORA_DIR}/cases)
set(LORA_BASE ${PROJECT_SOURCE_DIR}/fixtures/models/synth256)
set(LORA_IDS 1,23,45,67,89,101,123,145,167,189,211,233,255,277,299,321)
file(MAKE_DIRECTORY ${LORA_DIR})

add_executable(make_lora_cases ${CMAKE_CURRENT_SOURCE_DIR}/make_lora_cases.c
                               ${CMAKE_CURRENT_SOURCE_DIR}/case_support.c)
target_link_libraries(make_lora_cases PRIVATE qref)
add_test(NAME integration.lora.generate COMMAND make_lora_cases ${PROJECT_SOURCE_DIR}/fixtures/models ${LORA_CASES})
set_tests_properties(integration.lora.generate PROPERTIES LABELS "integration;lora" FIXTURES_SETUP lora_cases)

# Known answers: the merged model's logits equal those of the model the merge must give, bit for
# bit, and differ from the base model's (check_lora_logits.cmake).
foreach(case zero-v:base-zero-v:differ zero-v-rslora:base-zero-v:differ zero-b:base:same)
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 adapter)
  list(GET parts 1 expected)
  list(GET parts 2 versus_base)
  if(expected STREQUAL "base")
    set(expected_model ${LORA_BASE})
  else()
    set(expected_model ${LORA_CASES}/${expected})
  endif()
  add_test(NAME integration.lora.logits.${adapter}
    COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DCOMPARE=$<TARGET_FILE:compare_f32>
            -DBASE=${LORA_BASE} -DADAPTER=${LORA_CASES}/${adapter} -DEXPECTED_MODEL=${expected_model}
            -DIDS=${LORA_IDS} -DVERSUS_BASE=${versus_base} -DWORK=${LORA_DIR}/logits-${adapter}
            -P ${CMAKE_CURRENT_SOURCE_DIR}/check_lora_logits.cmake)
  set_tests_properties(integration.lora.logits.${adapter} PROPERTIES
    LABELS "integration;lora" FIXTURES_REQUIRED lora_cases)
endforeach()

# eval reads through the same provider: B = 0 leaves the perplexity of the base model.
add_test(NAME integration.lora.eval_zero_b
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DBASE=${LORA_BASE} -DADAPTER=${LORA_CASES}/zero-b
          -DDATA=${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_lora_eval.cmake)
set_tests_properties(integration.lora.eval_zero_b PROPERTIES LABELS "integration;lora" FIXTURES_REQUIRED lora_cases)

# One adapter per finding id: verify SYNTH256 --adapter CASE. Errors exit 3 with an ERROR check,
# warnings exit 0 with a WARN check; the valid adapter's summary is a PASS check.
function(add_lora_finding_test case id verdict exit_code overall regex)
  add_test(NAME integration.lora.finding.${case}
    COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform>
            "-DARGS=verify;${LORA_BASE};--adapter;${LORA_CASES}/${case}" -DREPORT=${LORA_DIR}/${case}.json
            -DID=${id} -DVERDICT=${verdict} -DEXPECTED_EXIT=${exit_code} -DEXPECTED_OVERALL=${overall}
            "-DMESSAGE=${regex}" -P ${CMAKE_CURRENT_SOURCE_DIR}/check_finding.cmake)
  set_tests_properties(integration.lora.finding.${case} PROPERTIES
    LABELS "integration;lora" FIXTURES_REQUIRED lora_cases TIMEOUT 120)
endfunction()

add_lora_finding_test(valid lora.adapter PASS 0 PASS
  "r 8, lora_alpha 16, scaling 2 \\(lora_alpha / r\\), 2 linears updated")
add_lora_finding_test(bad-config lora.config ERROR 3 ERROR "r is \"eight\" \\(a string\\), expected a positive integer")
add_lora_finding_test(bad-peft-type lora.peft_type ERROR 3 ERROR
  "peft_type \"PREFIX_TUNING\" is a PEFT method this version does not merge, expected \"LORA\"")
add_lora_finding_test(dora lora.unsupported ERROR 3 ERROR "use_dora is true: DoRA adapters")
add_lora_finding_test(target-missing lora.target_missing ERROR 3 ERROR
  "target_modules \\[\"query_key_value\"\\] matches no module of the base model")
add_lora_finding_test(target-unused lora.target_unused WARN 0 WARN
  "target_modules entry \"c_attn\" matches no module of the base model")
add_lora_finding_test(tensor-missing lora.tensor_missing ERROR 3 ERROR
  "module model\\.layers\\.1\\.self_attn\\.q_proj is targeted, but the adapter has no tensor .*lora_B\\.weight")
add_lora_finding_test(module-unknown lora.module_unknown ERROR 3 ERROR
  "belongs to module model\\.layers\\.5\\.self_attn\\.q_proj, which the base model does not have")
add_lora_finding_test(stray lora.stray WARN 0 WARN
  "belongs to module model\\.layers\\.0\\.mlp\\.up_proj, which target_modules does not select")
add_lora_finding_test(shape lora.shape ERROR 3 ERROR
  "layers\\.0\\.self_attn\\.q_proj\\.lora_A\\.weight\": shape \\[8, 255\\], expected \\[8, 256\\]")
add_lora_finding_test(rank lora.rank ERROR 3 ERROR
  "module model\\.layers\\.0\\.self_attn\\.q_proj stores rank 8, but r in adapter_config\\.json is 4")
add_lora_finding_test(dtype lora.dtype ERROR 3 ERROR "lora_A\\.weight\": dtype I32, expected F32, F16 or BF16")
add_lora_finding_test(nonfinite lora.nonfinite ERROR 3 ERROR "layers\\.1\\.self_attn\\.q_proj\\.lora_B\\.weight.*nan")
add_lora_finding_test(fan-in-fan-out lora.fan_in_fan_out WARN 0 WARN "fan_in_fan_out is true")

# A pickled adapter_model.bin is not read: exit 3, naming it.
add_test(NAME integration.lora.pickled
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;eval;${LORA_BASE};--adapter;${LORA_CASES}/pickled;--task;wikitext2;--data;${PROJECT_SOURCE_DIR}/fixtures/datasets/wikitext-2-raw/wiki.test.raw"
          -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=pickled adapter_model\\.bin, which is not read"
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
set_tests_properties(integration.lora.pickled PROPERTIES LABELS "integration;lora" FIXTURES_REQUIRED lora_cases)

# logits refuses an adapter with an error finding, naming the finding.
add_test(NAME integration.lora.logits_refuses_rank
  COMMAND ${CMAKE_COMMAND}
          "-DCOMMAND=$<TARGET_FILE:qconform>;logits;${LORA_BASE};--adapter;${LORA_CASES}/rank;--ids;1,2,3;--out;${LORA_DIR}/refused.f32"
          -DEXPECTED_EXIT=3 "-DEXPECTED_STDERR=stores rank 8, but r in adapter_config\\.json is 4 \\(lora\\.rank"
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
set_tests_properties(integration.lora.logits_refuses_rank PROPERTIES
  LABELS "integration;lora" FIXTURES_REQUIRED lora_cases)

# With --reference, the base weights under the adapter are compared with the reference: the
# adapter's update is intended, so the valid adapter on synth256 against synth256 passes.
add_test(NAME integration.lora.reference_base_weights
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform>
          "-DARGS=verify;${LORA_BASE};--reference;${LORA_BASE};--adapter;${LORA_CASES}/valid"
          -DREPORT=${LORA_DIR}/reference_base_weights.json -DID=reference.weights -DVERDICT=PASS
          -DEXPECTED_EXIT=0 -DEXPECTED_OVERALL=PASS
          "-DMESSAGE=every linear is within the float limit of 0[.]01 relative Frobenius error against the reference. worst 0 "
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_finding.cmake)
set_tests_properties(integration.lora.reference_base_weights PROPERTIES
  LABELS "integration;lora" FIXTURES_REQUIRED lora_cases TIMEOUT 120)
