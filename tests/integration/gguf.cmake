# Integration tests of GGUF models: llama.cpp's perplexities, logits against the Hugging Face
# snapshots, a third-party file, verify and hash, and malformed models.

set(GGUF_FIXTURES ${PROJECT_SOURCE_DIR}/fixtures)
set(GGUF_WORK ${CMAKE_CURRENT_BINARY_DIR}/gguf)
set(GGUF_WIKITEXT ${GGUF_FIXTURES}/datasets/wikitext-2-raw/wiki.test.raw)
file(MAKE_DIRECTORY ${GGUF_WORK})

add_executable(check_ppl_golden ${CMAKE_CURRENT_SOURCE_DIR}/check_ppl_golden.c)
target_link_libraries(check_ppl_golden PRIVATE qref)

# ---- llama.cpp's perplexities (fixtures/goldens/perplexity.json) -------------------------------
# llama-perplexity -c 512 --chunks 100 on the four stories260k GGUFs; each run takes seconds to
# a minute, depending on the build type.
foreach(type f32 F16 BF16 Q4_K_M)
  set(key models/stories260k-gguf/stories260k-${type}.gguf)
  add_test(NAME integration.gguf.ppl_stories260k_${type}
    COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> -DCHECK=$<TARGET_FILE:check_ppl_golden>
            -DMODEL=${GGUF_FIXTURES}/${key} -DKEY=${key} -DDATA=${GGUF_WIKITEXT}
            -DGOLDEN=${GGUF_FIXTURES}/goldens/perplexity.json -DOUT=${GGUF_WORK}/ppl-${type}.json
            -P ${CMAKE_CURRENT_SOURCE_DIR}/check_gguf_ppl.cmake)
  set_tests_properties(integration.gguf.ppl_stories260k_${type} PROPERTIES
    LABELS "integration;gguf;llamacpp" TIMEOUT 900)
endforeach()

# ---- logits ------------------------------------------------------------------------------------
# The F32 GGUF holds the snapshot's weights (Q/K rows interleaved), so the logits must agree to
# 1e-5; the lone model.safetensors reads config.json from its folder and must equal the folder.
set(GGUF_IDS 1,50,100,200,300,400,500,7,260,261,262,263)
add_test(NAME integration.gguf.logits_snapshot
  COMMAND qconform logits ${GGUF_FIXTURES}/models/synth256 --ids ${GGUF_IDS} --out ${GGUF_WORK}/synth256.f32)
add_test(NAME integration.gguf.logits_f32
  COMMAND qconform logits ${GGUF_FIXTURES}/models/synth256-gguf/synth256-f32.gguf --ids ${GGUF_IDS}
          --out ${GGUF_WORK}/synth256-gguf.f32)
add_test(NAME integration.gguf.logits_lone_safetensors
  COMMAND qconform logits ${GGUF_FIXTURES}/models/synth256/model.safetensors --ids ${GGUF_IDS}
          --out ${GGUF_WORK}/synth256-lone.f32)
add_test(NAME integration.gguf.logits_f32_equals_snapshot
  COMMAND compare_f32 ${GGUF_WORK}/synth256-gguf.f32 ${GGUF_WORK}/synth256.f32 1e-5)
add_test(NAME integration.gguf.logits_lone_equals_snapshot
  COMMAND compare_f32 ${GGUF_WORK}/synth256-lone.f32 ${GGUF_WORK}/synth256.f32 0)
set_tests_properties(integration.gguf.logits_snapshot integration.gguf.logits_f32
                     integration.gguf.logits_lone_safetensors PROPERTIES
  LABELS "integration;gguf;logits" FIXTURES_SETUP gguf_logits)
set_tests_properties(integration.gguf.logits_f32_equals_snapshot integration.gguf.logits_lone_equals_snapshot
  PROPERTIES LABELS "integration;gguf;logits" FIXTURES_REQUIRED gguf_logits)

# A third-party file (ollama's llama-2-tiny-random, F16 with the 32,000-token LLaMA-2
# vocabulary): it opens, its tokenizer encodes text, and the forward runs.
add_test(NAME integration.gguf.logits_tiny_random
  COMMAND qconform logits ${GGUF_FIXTURES}/models/llama-2-tiny-random/llama-2-tiny-random.gguf
          --text "Hello world" --out ${GGUF_WORK}/tiny-random.f32)
set_tests_properties(integration.gguf.logits_tiny_random PROPERTIES
  LABELS "integration;gguf;logits"
  PASS_REGULAR_EXPRESSION "wrote 3 x 32000 logits")

# ---- verify and hash ---------------------------------------------------------------------------
add_test(NAME integration.gguf.verify_synth256_q4_k_m
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform>
          -DARTIFACT=${GGUF_FIXTURES}/models/synth256-gguf/synth256-Q4_K_M.gguf
          -DREFERENCE=${GGUF_FIXTURES}/models/synth256 -DFILE_TYPE=Q4_K_M -DTENSORS=21
          -DREPORT=${GGUF_WORK}/verify-synth256-q4_k_m.json -P ${CMAKE_CURRENT_SOURCE_DIR}/check_gguf_verify.cmake)
add_test(NAME integration.gguf.verify_stories260k_bf16
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform>
          -DARTIFACT=${GGUF_FIXTURES}/models/stories260k-gguf/stories260k-BF16.gguf
          -DREFERENCE=${GGUF_FIXTURES}/models/stories260k -DFILE_TYPE=BF16 -DTENSORS=48
          -DREPORT=${GGUF_WORK}/verify-stories260k-bf16.json -P ${CMAKE_CURRENT_SOURCE_DIR}/check_gguf_verify.cmake)
set_tests_properties(integration.gguf.verify_synth256_q4_k_m integration.gguf.verify_stories260k_bf16 PROPERTIES
  LABELS "integration;gguf;verify" TIMEOUT 300)

# A GGUF made from another model fails the reference comparison: stories260k is not synth256.
add_test(NAME integration.gguf.verify_wrong_reference
  COMMAND qconform verify ${GGUF_FIXTURES}/models/synth256-gguf/synth256-Q8_0.gguf
          --reference ${GGUF_FIXTURES}/models/stories260k --report ${GGUF_WORK}/verify-wrong.json)
set_tests_properties(integration.gguf.verify_wrong_reference PROPERTIES
  LABELS "integration;gguf;verify" WILL_FAIL TRUE)

file(SHA256 ${GGUF_FIXTURES}/models/stories260k-gguf/stories260k-Q4_K_M.gguf GGUF_Q4_K_M_SHA256)
add_test(NAME integration.gguf.hash
  COMMAND qconform hash ${GGUF_FIXTURES}/models/stories260k-gguf/stories260k-Q4_K_M.gguf)
set_tests_properties(integration.gguf.hash PROPERTIES
  LABELS "integration;gguf;hash"
  PASS_REGULAR_EXPRESSION "^${GGUF_Q4_K_M_SHA256}  file    stories260k-Q4_K_M[.]gguf\n[0-9a-f]+  tensor  output[.]weight\n")

# ---- eval options ------------------------------------------------------------------------------
add_test(NAME integration.gguf.eval_window_count
  COMMAND qconform eval ${GGUF_FIXTURES}/models/stories260k --task wikitext2 --data ${GGUF_WIKITEXT} --windows 2)
set_tests_properties(integration.gguf.eval_window_count PROPERTIES
  LABELS "integration;gguf;eval"
  PASS_REGULAR_EXPRESSION "^wikitext2 ppl [0-9.]+ [(]study protocol, seqlen 512, 2 of 1591 windows, 815066 tokens[)]")
add_test(NAME integration.gguf.eval_empty_shard
  COMMAND qconform eval ${GGUF_FIXTURES}/models/stories260k-gguf/stories260k-Q4_K_M.gguf --task wikitext2
          --data ${GGUF_WIKITEXT} --ctx 512 --chunks 2 --shard 3/5)
set_tests_properties(integration.gguf.eval_empty_shard PROPERTIES
  LABELS "integration;gguf;eval"
  PASS_REGULAR_EXPRESSION "wikitext2: no windows in this shard [(]llamacpp protocol, seqlen 512, 2 windows selected of 1580, shard 3/5, 809289 tokens[)]")
add_test(NAME integration.gguf.eval_empty_shard_json
  COMMAND qconform eval ${GGUF_FIXTURES}/models/stories260k-gguf/stories260k-Q4_K_M.gguf --task wikitext2
          --data ${GGUF_WIKITEXT} --ctx 512 --chunks 2 --shard 3/5 --json)
set_tests_properties(integration.gguf.eval_empty_shard_json PROPERTIES
  LABELS "integration;gguf;eval"
  PASS_REGULAR_EXPRESSION "\"ppl\":[ \t]*null,[ \t\n]*\"ppl_stderr\":[ \t]*null")
foreach(case "ctx_and_seqlen:--ctx;512;--seqlen;512:--ctx and --seqlen set the same window length"
             "chunks_and_windows:--chunks;2;--windows;2:--chunks and --windows set the same window count"
             "chunks_with_study:--protocol;study;--chunks;2:--chunks is an option of the llamacpp protocol")
  string(REPLACE ":" ";" parts "${case}")
  list(GET parts 0 name)
  list(GET parts -1 regex)
  list(REMOVE_AT parts 0 -1)
  add_test(NAME integration.gguf.eval_usage_${name}
    COMMAND ${CMAKE_COMMAND}
            "-DCOMMAND=$<TARGET_FILE:qconform>;eval;${GGUF_FIXTURES}/models/stories260k;--task;wikitext2;--data;${GGUF_WIKITEXT};${parts}"
            -DEXPECTED_EXIT=2 "-DEXPECTED_STDERR=${regex}" -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
  set_tests_properties(integration.gguf.eval_usage_${name} PROPERTIES LABELS "integration;gguf;eval")
endforeach()

# ---- malformed GGUF models -------------------------------------------------------------------
# make_gguf_malformed rewrites synth256-f32.gguf with one fault each. verify, eval and logits
# must exit 3 and name the tensor or key, the value found and the value expected.
set(GGUF_MALFORMED ${GGUF_WORK}/malformed)
add_executable(make_gguf_malformed ${CMAKE_CURRENT_SOURCE_DIR}/make_gguf_malformed.c)
target_link_libraries(make_gguf_malformed PRIVATE qref)
target_include_directories(make_gguf_malformed PRIVATE ${PROJECT_SOURCE_DIR}/tests/support)
add_test(NAME integration.gguf.malformed_generate
  COMMAND make_gguf_malformed ${GGUF_FIXTURES}/models/synth256-gguf/synth256-f32.gguf ${GGUF_MALFORMED})
set_tests_properties(integration.gguf.malformed_generate PROPERTIES
  LABELS "integration;gguf;malformed" FIXTURES_SETUP gguf_malformed)

set(gguf_malformed_cases
  gguf_wrong_shape
  "gguf_wrong_shape[.]gguf: tensor \"blk[.]0[.]attn_k[.]weight\": ne [[]256, 64[]], expected [[]256, 128[]] [(]in_features, out_features of model[.]layers[.]0[.]self_attn[.]k_proj[.]weight as the config implies[)]"
  gguf_missing_tensor
  "gguf_missing_tensor[.]gguf: tensor \"blk[.]1[.]ffn_down[.]weight\" not found [(]expected ne [[]768, 256[]], read as model[.]layers[.]1[.]mlp[.]down_proj[.]weight[)]"
  gguf_unsupported_type
  "gguf_unsupported_type[.]gguf: tensor \"blk[.]0[.]ffn_up[.]weight\": ggml type IQ2_XXS [(]16[)] has no dequantizer here"
  gguf_not_llama
  "gguf_not_llama[.]gguf: general[.]architecture \"gptneox\" is not supported [(]expected \"llama\"[)]")
# the unsupported ggml type is the structure.type check of verify's report
add_test(NAME integration.gguf.malformed_unsupported_type.finding
  COMMAND ${CMAKE_COMMAND} -DQCONFORM=$<TARGET_FILE:qconform> "-DARGS=verify;${GGUF_MALFORMED}/gguf_unsupported_type.gguf"
          -DREPORT=${GGUF_MALFORMED}/out/gguf_unsupported_type.finding.json -DID=structure.type -DVERDICT=ERROR
          -DEXPECTED_EXIT=3 "-DMESSAGE=tensor \"blk[.]0[.]ffn_up[.]weight\": ggml type IQ2_XXS [(]16[)] has no dequantizer here"
          -P ${CMAKE_CURRENT_SOURCE_DIR}/check_finding.cmake)
set_tests_properties(integration.gguf.malformed_unsupported_type.finding PROPERTIES
  LABELS "integration;gguf;malformed" FIXTURES_REQUIRED gguf_malformed)

list(LENGTH gguf_malformed_cases gguf_malformed_length)
math(EXPR gguf_malformed_last "${gguf_malformed_length} - 1")
foreach(i RANGE 0 ${gguf_malformed_last} 2)
  math(EXPR j "${i} + 1")
  list(GET gguf_malformed_cases ${i} case)
  list(GET gguf_malformed_cases ${j} regex)
  set(model ${GGUF_MALFORMED}/${case}.gguf)
  set(out ${GGUF_MALFORMED}/out/${case})
  foreach(command verify eval logits)
    if(command STREQUAL "verify")
      set(args verify ${model} --report ${out}.verify/report.json --junit ${out}.verify/report.xml)
    elseif(command STREQUAL "eval")
      set(args eval ${model} --task wikitext2 --data ${GGUF_WIKITEXT} --ctx 512 --chunks 1)
    else()
      set(args logits ${model} --ids 1,2,3 --out ${out}.logits/logits.f32)
    endif()
    set(checks -DEXPECTED_EXIT=3 "-DEXPECTED_OUTPUT=${regex}" -DOUTPUT_DIR=${out}.${command})
    if(command STREQUAL "verify")
      list(APPEND checks -DREPORT_JSON=${out}.verify/report.json -DEXPECTED_VERDICT=ERROR
                         -DREPORT_JUNIT=${out}.verify/report.xml)
    endif()
    add_test(NAME integration.gguf.${case}.${command}
      COMMAND ${CMAKE_COMMAND} "-DCOMMAND=$<TARGET_FILE:qconform>;${args}" ${checks}
              -P ${CMAKE_CURRENT_SOURCE_DIR}/check_exit_code.cmake)
    set_tests_properties(integration.gguf.${case}.${command} PROPERTIES
      LABELS "integration;gguf;malformed" FIXTURES_REQUIRED gguf_malformed TIMEOUT 120)
  endforeach()
endforeach()
