# qconform compare of QUANT against REFERENCE on 4 chunks of wiki.test.raw:
#   1. with the reference run live, saving its log-probabilities to a base logits file;
#   2. from that file (--base-logits);
#   3. from that file with one OpenMP thread.
# The JSON of run 1 must have every field with a plausible value, the file must be complete
# (no temporary file left) with the digest the JSON reports, and runs 2 and 3 must report the
# same statistics as run 1, digit for digit.
set(base_file ${WORK}/compare-base.kld)
file(REMOVE ${base_file})

function(run_compare out_var)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE json ERROR_VARIABLE stderr)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "`${ARGN}` exited ${result}: ${stderr}")
  endif()
  set(${out_var} "${json}" PARENT_SCOPE)
endfunction()

# Fails unless the JSON member at the given path is a number in [low, high].
function(expect_range json low high)
  string(JSON value GET "${json}" ${ARGN})
  if(NOT value GREATER_EQUAL ${low} OR NOT value LESS_EQUAL ${high})
    message(FATAL_ERROR "${ARGN} = ${value}, expected a value in [${low}, ${high}]")
  endif()
endfunction()

function(expect_equal json key expected)
  string(JSON value GET "${json}" ${key})
  if(NOT value STREQUAL expected)
    message(FATAL_ERROR "${key} = ${value}, expected ${expected}")
  endif()
endfunction()

run_compare(live ${QCONFORM} compare ${QUANT} --reference ${REFERENCE} --task wikitext2 --data ${DATA}
            --chunks 4 --save-base-logits ${base_file} --json)
run_compare(from_file ${QCONFORM} compare ${QUANT} --base-logits ${base_file} --json)
run_compare(one_thread ${CMAKE_COMMAND} -E env OMP_NUM_THREADS=1
            ${QCONFORM} compare ${QUANT} --base-logits ${base_file} --ctx 512 --chunks 4 --json)

# 1. the protocol fields: 512-token chunks, logits 256..510 scored, 255 tokens per chunk
expect_equal("${live}" schema "qconform-compare/1")
expect_equal("${live}" n_ctx 512)
expect_equal("${live}" chunks 4)
expect_equal("${live}" tokens_scored 1020)
expect_equal("${live}" bos_id 1)
string(JSON first GET "${live}" positions first_scored_logit)
string(JSON last GET "${live}" positions last_scored_logit)
if(NOT first EQUAL 256 OR NOT last EQUAL 510)
  message(FATAL_ERROR "scored logits ${first} .. ${last}, expected 256 .. 510")
endif()
# 809283 tokens: the SentencePiece library's count for llama.cpp's text of this file with this
# tokenizer.model (the notes of fixtures/goldens/perplexity.json)
expect_equal("${live}" tokens 809283)
file(SHA256 ${DATA} data_sha)
string(JSON dataset_sha GET "${live}" dataset sha256)
if(NOT dataset_sha STREQUAL data_sha)
  message(FATAL_ERROR "dataset sha256 ${dataset_sha}, expected ${data_sha}")
endif()

foreach(model quantized reference)
  string(JSON manifest GET "${live}" ${model} manifest_sha256)
  if(NOT manifest MATCHES "^[0-9a-f]+$" OR NOT manifest MATCHES "^................................................................$")
    message(FATAL_ERROR "${model} manifest_sha256 '${manifest}', expected 64 hex digits")
  endif()
endforeach()

# 2. plausible statistics for a 4-bit GPTQ artifact against its own full-precision model
expect_range("${live}" 1e-9 10 kld mean value)
expect_range("${live}" 1e-12 1 kld mean uncertainty)
expect_range("${live}" 0 1 same_top_p value)
expect_range("${live}" 1e-9 1 same_top_p uncertainty)
expect_range("${live}" 1 1e6 ppl quantized value)
expect_range("${live}" 1 1e6 ppl base value)
expect_range("${live}" 0.5 2 ppl ratio value)
expect_range("${live}" -1 1 ppl ln_correlation)
expect_range("${live}" 0 1 delta_p rms value)
expect_range("${live}" 0 1 delta_p max_abs)
string(JSON kld_max GET "${live}" kld percentiles max)
string(JSON kld_median GET "${live}" kld percentiles median)
string(JSON kld_min GET "${live}" kld percentiles min)
if(NOT kld_max GREATER_EQUAL kld_median OR NOT kld_median GREATER_EQUAL kld_min)
  message(FATAL_ERROR "KLD percentiles out of order: max ${kld_max}, median ${kld_median}, min ${kld_min}")
endif()
foreach(rank "99.9%" "99%" "95%" "90%" "10%" "5%" "1%" "0.1%")
  string(JSON value GET "${live}" kld percentiles ${rank})
endforeach()
foreach(rank "75%" "25%")
  string(JSON value GET "${live}" delta_p percentiles ${rank})
endforeach()

# 3. the saved file: complete, atomic, and the digest the JSON reports
if(NOT EXISTS ${base_file})
  message(FATAL_ERROR "${base_file} was not written")
endif()
file(GLOB leftovers ${base_file}.tmp.*)
if(leftovers)
  message(FATAL_ERROR "temporary files left next to the base logits: ${leftovers}")
endif()
# 20 header bytes + 4*512 tokens of 4 bytes + 4*255 rows of 2*(512 + 4) bytes
file(SIZE ${base_file} base_size)
if(NOT base_size EQUAL 1060852)
  message(FATAL_ERROR "${base_file} is ${base_size} bytes, expected 1060852")
endif()
file(SHA256 ${base_file} base_sha)
string(JSON live_base_sha GET "${live}" base_logits sha256)
if(NOT live_base_sha STREQUAL base_sha)
  message(FATAL_ERROR "base_logits sha256 ${live_base_sha}, the file has ${base_sha}")
endif()

# 4. the same numbers from the file and with one thread. A file run lacks only the reference's
#    unencoded perplexity (ppl.base_exact and ppl.ratio_exact), which the file does not hold, so
#    ppl is compared member by member over the members the run has.
foreach(run from_file one_thread)
  string(JSON ppl_members LENGTH "${${run}}" ppl)
  math(EXPR last_member "${ppl_members} - 1")
  foreach(i RANGE ${last_member})
    string(JSON member MEMBER "${${run}}" ppl ${i})
    string(JSON expected GET "${live}" ppl ${member})
    string(JSON value GET "${${run}}" ppl ${member})
    if(NOT value STREQUAL expected)
      message(FATAL_ERROR "${run}: ppl.${member} = ${value}\nexpected (live run) ${expected}")
    endif()
  endforeach()
  foreach(key kld delta_p same_top_p sums tokens_sha256 tokens_scored n_ctx chunks quantized)
    string(JSON expected GET "${live}" ${key})
    string(JSON value GET "${${run}}" ${key})
    if(NOT value STREQUAL expected)
      message(FATAL_ERROR "${run}: ${key} = ${value}\nexpected (live run) ${expected}")
    endif()
  endforeach()
  string(JSON run_base_sha GET "${${run}}" base_logits sha256)
  if(NOT run_base_sha STREQUAL base_sha)
    message(FATAL_ERROR "${run}: base_logits sha256 ${run_base_sha}, expected ${base_sha}")
  endif()
endforeach()
expect_equal("${one_thread}" threads 1)
