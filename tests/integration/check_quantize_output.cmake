# Prepares or checks the output folder of a `qconform quantize` run, for ctest.
#
#   cmake -DDIR=path [-DMARKER=name] -DMODE=prepare|check -P check_quantize_output.cmake
#
# prepare: deletes DIR and any temporary sibling, then creates DIR containing the file MARKER
# when MARKER is given.
# check: without MARKER, DIR must not exist; with MARKER, DIR must still contain that file
# and no model.safetensors. In both cases no temporary sibling ".<name>.tmp-*" or
# ".<name>.old-*" that the writer creates next to DIR may remain.
if(NOT DEFINED DIR OR NOT DEFINED MODE)
  message(FATAL_ERROR "check_quantize_output.cmake needs -DDIR=... and -DMODE=prepare|check")
endif()
get_filename_component(parent "${DIR}" DIRECTORY)
get_filename_component(name "${DIR}" NAME)
file(GLOB siblings LIST_DIRECTORIES true "${parent}/.${name}.tmp-*" "${parent}/.${name}.old-*")

if(MODE STREQUAL "prepare")
  file(REMOVE_RECURSE "${DIR}" ${siblings})
  if(DEFINED MARKER)
    file(MAKE_DIRECTORY "${DIR}")
    file(WRITE "${DIR}/${MARKER}" "keep")
  endif()
  return()
endif()

if(siblings)
  message(FATAL_ERROR "temporary folders left behind: ${siblings}")
endif()
if(DEFINED MARKER)
  if(NOT EXISTS "${DIR}/${MARKER}")
    message(FATAL_ERROR "${DIR}/${MARKER} is gone, expected the existing folder to be kept")
  endif()
  if(EXISTS "${DIR}/model.safetensors")
    message(FATAL_ERROR "${DIR}/model.safetensors exists, expected the existing folder unchanged")
  endif()
elseif(EXISTS "${DIR}")
  message(FATAL_ERROR "${DIR} exists, expected no output folder after a failed run")
endif()
message(STATUS "output folder ${DIR} as expected")
