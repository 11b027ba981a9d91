# End-to-end tests of `frugal report` and `frugal plan`: each runs the program and checks the
# figures of its --json output (python3 scripts beside this file), its exit status and stderr.
find_package(Python3 COMPONENTS Interpreter)
if(NOT Python3_FOUND)
  message(STATUS "frugal: python3 not found; the report and plan CLI tests are skipped")
  return()
endif()

set(_frugal_cli_test_dir "${CMAKE_CURRENT_BINARY_DIR}/report_plan")
# The default report, every section's figures (and its pictures with --svg). Builds with the
# expensive debug checks (the asan preset validates the KV cache and scheduler after every
# operation) serve 100 requests on a 24 GiB GPU instead of 1000 on 80 GiB (still more than
# static batching holds at once), which keeps the run to about half a minute.
set(_frugal_report_extra)
if(FRUGAL_DEBUG_LEVEL GREATER_EQUAL 2)
  set(_frugal_report_extra --gpu-memory 24GiB --requests 100)
endif()
add_test(NAME cli_report_default
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/report_check.py
                 $<TARGET_FILE:frugal_cli> ${_frugal_cli_test_dir}/report ${_frugal_report_extra})
# The text output and the options, on a smaller scenario (a config.json model, another GPU).
add_test(NAME cli_report_options
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/report_options_check.py
                 $<TARGET_FILE:frugal_cli> ${_frugal_cli_test_dir}/options)
add_test(NAME cli_plan
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/plan_check.py
                 $<TARGET_FILE:frugal_cli> ${_frugal_cli_test_dir}/plan)
# The total freed, the concurrency headline's limit, fragmentation's sign. Eleven reports: with
# the expensive debug checks (the asan preset) they take over five minutes, so there the release
# run's check of the figures stands for it (the same code, without the checks).
set(_frugal_cli_figure_tests cli_report_default cli_report_options cli_plan cli_plan_models
                             cli_report_plan_errors)
if(NOT FRUGAL_DEBUG_LEVEL GREATER_EQUAL 2)
  add_test(NAME cli_report_totals
           COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/report_totals_check.py
                   $<TARGET_FILE:frugal_cli> ${_frugal_cli_test_dir}/totals)
  list(APPEND _frugal_cli_figure_tests cli_report_totals)
endif()
# Mixture of experts, sliding windows, tied embeddings, refused model types.
add_test(NAME cli_plan_models
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/plan_models_check.py
                 $<TARGET_FILE:frugal_cli> ${_frugal_cli_test_dir}/models)
# Bad usage exits 2, bad files exit 1, both with one line on stderr.
add_test(NAME cli_report_plan_errors
         COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/plan_errors_check.py
                 $<TARGET_FILE:frugal_cli> ${_frugal_cli_test_dir}/errors)
set_tests_properties(${_frugal_cli_figure_tests} PROPERTIES LABELS "cli" TIMEOUT 300)
