# End-to-end tests of `frugal replay` and `frugal quant`: replay_quant_check.py runs the program,
# parses its --json output and checks the figures, the exit status and the one-line errors.
find_package(Python3 COMPONENTS Interpreter)
if(NOT Python3_FOUND)
  message(STATUS "frugal: python3 not found; the replay and quant CLI tests are skipped")
  return()
endif()

set(_frugal_replay_quant_dir "${CMAKE_CURRENT_BINARY_DIR}/replay_quant")
foreach(_case replay_json replay_allocators replay_synthetic replay_bad_input replay_truncated
              replay_usage quant_json quant_mixed_dtypes quant_bad_input)
  add_test(NAME cli_${_case}
           COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/replay_quant_check.py
                   $<TARGET_FILE:frugal_cli> ${_frugal_replay_quant_dir}/${_case} ${_case})
  set_tests_properties(cli_${_case} PROPERTIES LABELS "cli" TIMEOUT 300)
endforeach()
