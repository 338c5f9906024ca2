# SPDX-License-Identifier: Apache-2.0
# libFuzzer targets of the on-disk record, the segment scanner and the ioctl
# request checks (tests/fuzz/README.md). libFuzzer comes with clang only:
#   cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang-14 -DKVFS_FUZZ=ON
#   cmake --build build-fuzz --target kvfs-fuzz
#   tests/fuzz/run.sh build-fuzz 60
option(KVFS_FUZZ "Build the libFuzzer targets of tests/fuzz (needs clang)" OFF)
if(KVFS_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "KVFS_FUZZ=ON needs clang: -DCMAKE_C_COMPILER=clang-14 "
      "(Debian: apt-get install clang-14 libfuzzer-14-dev)")
  endif()
  set(KVFS_FUZZ_SAN address,undefined)
  # The code under test must carry the fuzzer's coverage and the
  # sanitizers' checks, not only the targets. Whatever links kvfscore then
  # needs the sanitizer runtimes too.
  target_compile_options(kvfscore PRIVATE -fsanitize=fuzzer-no-link,${KVFS_FUZZ_SAN}
    -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(kvfscore INTERFACE -fsanitize=${KVFS_FUZZ_SAN})
  set(KVFS_FUZZ_TARGETS)
  foreach(t record segment ioctl meta)
    add_executable(fuzz_${t} ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_${t}.c)
    target_compile_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,${KVFS_FUZZ_SAN}
      -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer,${KVFS_FUZZ_SAN})
    target_link_libraries(fuzz_${t} PRIVATE kvfscore)
    set_target_properties(fuzz_${t} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
    list(APPEND KVFS_FUZZ_TARGETS fuzz_${t})
  endforeach()
  add_custom_target(kvfs-fuzz DEPENDS ${KVFS_FUZZ_TARGETS})
endif()
