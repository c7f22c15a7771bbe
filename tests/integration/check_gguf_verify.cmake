# Verifies a GGUF artifact against its Hugging Face reference and checks the report: verdict
# PASS, the artifact described as format "gguf" with its file type, a manifest whose file
# digest is the file's SHA-256 and which lists every tensor with its ggml type, shape and
# digest, and the structure, tokenizer and reference-weight checks passed.
#
#   cmake -DQCONFORM=... -DARTIFACT=x.gguf -DREFERENCE=dir -DFILE_TYPE=Q4_K_M -DTENSORS=21
#         -DREPORT=report.json -P check_gguf_verify.cmake
cmake_policy(SET CMP0057 NEW)
execute_process(COMMAND ${QCONFORM} verify ${ARTIFACT} --reference ${REFERENCE} --report ${REPORT}
  RESULT_VARIABLE result OUTPUT_VARIABLE stdout ERROR_VARIABLE stderr)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "qconform verify exited ${result}\n${stdout}${stderr}")
endif()
file(READ ${REPORT} report)
string(JSON verdict GET "${report}" verdict)
string(JSON format GET "${report}" artifact format)
string(JSON method GET "${report}" artifact method)
if(NOT verdict STREQUAL "PASS" OR NOT format STREQUAL "gguf" OR NOT method STREQUAL "${FILE_TYPE}")
  message(FATAL_ERROR "verdict ${verdict}, format ${format}, method ${method}; expected PASS, gguf, ${FILE_TYPE}")
endif()

file(SHA256 ${ARTIFACT} file_digest)
string(JSON manifest_digest GET "${report}" manifest files 0 sha256)
string(JSON tensor_count LENGTH "${report}" manifest tensors)
if(NOT manifest_digest STREQUAL file_digest OR NOT tensor_count EQUAL ${TENSORS})
  message(FATAL_ERROR "manifest: file digest ${manifest_digest} (file ${file_digest}), ${tensor_count} tensors "
                      "(expected ${TENSORS})")
endif()
math(EXPR last "${tensor_count} - 1")
foreach(i RANGE ${last})
  string(JSON name GET "${report}" manifest tensors ${i} name)
  string(JSON type GET "${report}" manifest tensors ${i} type)
  string(JSON dims LENGTH "${report}" manifest tensors ${i} shape)
  string(JSON digest GET "${report}" manifest tensors ${i} sha256)
  string(LENGTH "${digest}" digest_length)
  if(NOT type MATCHES "^(F32|F16|BF16|Q[0-9]_[0-9K]|IQ4_NL)$" OR dims LESS 1 OR NOT digest_length EQUAL 64)
    message(FATAL_ERROR "manifest entry ${i} (${name}): type ${type}, ${dims} dimensions, digest ${digest}")
  endif()
endforeach()

string(JSON check_count LENGTH "${report}" checks)
math(EXPR last "${check_count} - 1")
set(passed "")
foreach(i RANGE ${last})
  string(JSON id GET "${report}" checks ${i} id)
  string(JSON check_verdict GET "${report}" checks ${i} verdict)
  if(check_verdict STREQUAL "PASS")
    list(APPEND passed ${id})
  endif()
endforeach()
foreach(id manifest structure structure.tokenizer reference.config reference.weights)
  if(NOT id IN_LIST passed)
    message(FATAL_ERROR "check ${id} did not pass; passed: ${passed}")
  endif()
endforeach()
