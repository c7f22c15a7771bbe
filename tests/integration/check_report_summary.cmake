# Verifies the bundled AutoGPTQ artifact with its suite into a JSON report, summarizes it with
# `qconform report summary`, and checks the Markdown table row and the SVG plot it links.
file(REMOVE_RECURSE ${WORK}/summary)
file(MAKE_DIRECTORY ${WORK}/summary)
execute_process(COMMAND ${QCONFORM} verify ${SOURCE}/fixtures/models/synth256-autogptq-w4g128
                        --suite ${SOURCE}/suites/synth256-autogptq.json --quiet --report ${WORK}/summary/report.json
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "verify exited ${result}")
endif()
execute_process(COMMAND ${QCONFORM} report summary ${WORK}/summary/report.json --markdown ${WORK}/summary/summary.md
                        --svg-prefix ${WORK}/summary/plot-
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "report summary exited ${result}")
endif()
file(READ ${WORK}/summary/summary.md markdown)
if(NOT markdown MATCHES "\\| gptq g128 \\| [0-9.e-]+ PASS \\|" OR
   NOT markdown MATCHES "plot-golden-logits-logits_max_abs_error[.]svg")
  message(FATAL_ERROR "unexpected summary:\n${markdown}")
endif()
file(READ ${WORK}/summary/plot-golden-logits-logits_max_abs_error.svg svg)
if(NOT svg MATCHES "^<svg " OR NOT svg MATCHES "<circle " OR NOT svg MATCHES "</svg>\n$")
  message(FATAL_ERROR "unexpected plot:\n${svg}")
endif()
