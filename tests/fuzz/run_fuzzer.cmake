# Builds one libFuzzer target with clang++ (when its sources changed) and runs it for SECONDS.
# Inputs (-D): CLANGXX, NAME, SOURCE_DIR, WORK_DIR, SOURCES and INCLUDES ('|'-separated),
# SECONDS. A crash leaves its input in WORK_DIR/NAME-artifacts/ and fails the test.
string(REPLACE "|" ";" SOURCES "${SOURCES}")
string(REPLACE "|" ";" INCLUDES "${INCLUDES}")
set(binary ${WORK_DIR}/${NAME}_fuzzer)

set(rebuild FALSE)
if(NOT EXISTS ${binary})
  set(rebuild TRUE)
endif()
file(GLOB_RECURSE headers ${SOURCE_DIR}/include/frugal/*.hpp)
set(paths)
foreach(source ${SOURCES})
  list(APPEND paths ${SOURCE_DIR}/${source})
endforeach()
foreach(input ${paths} ${headers})
  if(${input} IS_NEWER_THAN ${binary})
    set(rebuild TRUE)
  endif()
endforeach()

if(rebuild)
  set(flags -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -DLIBCUDACXX_ENABLE_EXPERIMENTAL_MEMORY_RESOURCE -DFRUGAL_DEBUG_LEVEL=1)
  foreach(dir ${INCLUDES})
    list(APPEND flags -I${dir})
  endforeach()
  message(STATUS "building ${binary} with ${CLANGXX}")
  execute_process(COMMAND ${CLANGXX} ${flags} ${paths} -o ${binary}.tmp
                  RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "building the ${NAME} fuzzer failed (${status})")
  endif()
  file(RENAME ${binary}.tmp ${binary})
endif()

# The corpus grows in the build tree; the seeds in the source tree stay as they are.
set(corpus ${WORK_DIR}/${NAME}-corpus)
set(artifacts ${WORK_DIR}/${NAME}-artifacts/)
file(MAKE_DIRECTORY ${corpus} ${artifacts})
set(options -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=4096 -max_len=4096
            -print_final_stats=1 -artifact_prefix=${artifacts})
if(EXISTS ${SOURCE_DIR}/tests/fuzz/${NAME}.dict)
  list(APPEND options -dict=${SOURCE_DIR}/tests/fuzz/${NAME}.dict)
endif()
execute_process(COMMAND ${binary} ${options} ${corpus} ${SOURCE_DIR}/tests/fuzz/corpus/${NAME}
                RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  file(GLOB found ${artifacts}*)
  message(FATAL_ERROR "the ${NAME} fuzzer failed (${status}); inputs: ${found}")
endif()
