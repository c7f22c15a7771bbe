# qconform_add_suite(SUITE <file> [QCONFORM <program>] [REFERENCE <snapshot>] [LABELS <label>...])
#
# Registers every cell of a qconform suite file as its own ctest test named
# "suite.<suite name>.<cell id>", labelled "suite", "suite:<name>", "method:<method>",
# "bits:<bits>" and "benchmark:<benchmark>" plus any LABELS given. A cell measures:
#   - the reference model when its subject is "reference";
#   - the artifact its "artifact" path names (relative to the suite file);
#   - otherwise, for method "rtn", an artifact that a setup test writes once per
#     (bits, group size, sym) with `qconform quantize ... --format gptq`.
# Each test runs `qconform verify ... --suite <file> --cell <id>` and writes
# <cell id>.json and <cell id>.xml reports under the build folder; its exit code is the verdict.
# Cells share a perplexity cache there, so the reference model is evaluated once per window count.
#
# QCONFORM defaults to the qconform target of this build (or qconform::qconform when used
# through find_package); REFERENCE overrides the suite's reference snapshot.
function(qconform_add_suite)
  cmake_parse_arguments(PARSE_ARGV 0 ARG "" "SUITE;QCONFORM;REFERENCE" "LABELS")
  if(NOT ARG_SUITE)
    message(FATAL_ERROR "qconform_add_suite: SUITE <file> is required")
  endif()
  get_filename_component(suite_file "${ARG_SUITE}" ABSOLUTE)
  get_filename_component(suite_dir "${suite_file}" DIRECTORY)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${suite_file}")
  file(READ "${suite_file}" suite_json)

  if(ARG_QCONFORM)
    set(program "${ARG_QCONFORM}")
  elseif(TARGET qconform)
    set(program "$<TARGET_FILE:qconform>")
  elseif(TARGET qconform::qconform)
    set(program "$<TARGET_FILE:qconform::qconform>")
  else()
    message(FATAL_ERROR "qconform_add_suite: no qconform program; pass QCONFORM <path>")
  endif()

  string(JSON suite_name GET "${suite_json}" name)
  if(ARG_REFERENCE)
    get_filename_component(reference "${ARG_REFERENCE}" ABSOLUTE)
  else()
    string(JSON reference_relative ERROR_VARIABLE no_reference GET "${suite_json}" reference)
    if(no_reference)
      message(FATAL_ERROR "qconform_add_suite: ${suite_file} names no reference; pass REFERENCE")
    endif()
    get_filename_component(reference "${reference_relative}" ABSOLUTE BASE_DIR "${suite_dir}")
  endif()

  set(work_dir "${CMAKE_CURRENT_BINARY_DIR}/qconform-suites/${suite_name}")
  file(MAKE_DIRECTORY "${work_dir}/cache")
  string(JSON cell_count LENGTH "${suite_json}" cells)
  math(EXPR last "${cell_count} - 1")
  foreach(index RANGE ${last})
    string(JSON cell GET "${suite_json}" cells ${index})
    string(JSON id GET "${cell}" id)
    string(JSON method GET "${cell}" method)
    string(JSON bits GET "${cell}" bits)
    string(JSON benchmark GET "${cell}" benchmark)
    string(JSON subject ERROR_VARIABLE no_subject GET "${cell}" subject)
    string(JSON artifact_relative ERROR_VARIABLE no_artifact GET "${cell}" artifact)
    string(JSON group ERROR_VARIABLE no_group GET "${cell}" group_size)
    string(JSON sym ERROR_VARIABLE no_sym GET "${cell}" sym)
    if(no_group)
      set(group -1)
    endif()
    if(no_sym OR sym STREQUAL "OFF" OR sym STREQUAL "false")
      set(sym_args "")
      set(sym_tag asym)
    else()
      set(sym_args --sym)
      set(sym_tag sym)
    endif()

    set(test_name "suite.${suite_name}.${id}")
    set(fixture "")
    if(NOT no_subject AND subject STREQUAL "reference")
      set(artifact "${reference}")
    elseif(NOT no_artifact)
      get_filename_component(artifact "${artifact_relative}" ABSOLUTE BASE_DIR "${suite_dir}")
    elseif(method STREQUAL "rtn")
      set(fixture "qconform.${suite_name}.rtn-w${bits}-g${group}-${sym_tag}")
      set(artifact "${work_dir}/artifacts/rtn-w${bits}-g${group}-${sym_tag}")
      if(NOT TEST "${fixture}")
        add_test(NAME "${fixture}"
          COMMAND "${program}" quantize "${reference}" --method rtn --bits ${bits} --group ${group}
                  ${sym_args} --format gptq --out "${artifact}" --force)
        set_tests_properties("${fixture}" PROPERTIES FIXTURES_SETUP "${fixture}"
          LABELS "suite;suite:${suite_name};setup")
      endif()
    else()
      message(FATAL_ERROR "qconform_add_suite: ${suite_file}: cell ${id} names no artifact, and method "
                          "${method} has no reference quantizer to produce one")
    endif()

    add_test(NAME "${test_name}"
      COMMAND "${program}" verify "${artifact}" --reference "${reference}" --suite "${suite_file}"
              --cell "${id}" --quiet --report "${work_dir}/${id}.json" --junit "${work_dir}/${id}.xml"
              --cache "${work_dir}/cache")
    set_tests_properties("${test_name}" PROPERTIES
      LABELS "suite;suite:${suite_name};method:${method};bits:${bits};benchmark:${benchmark};${ARG_LABELS}")
    if(fixture)
      set_tests_properties("${test_name}" PROPERTIES FIXTURES_REQUIRED "${fixture}")
    endif()
  endforeach()
endfunction()
