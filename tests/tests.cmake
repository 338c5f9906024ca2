# SPDX-License-Identifier: Apache-2.0
# Unit tests (Check) and integration tests on a real mount. kvfs-unit
# builds the unit tests alone (the ThreadSanitizer stage of scripts/test.sh
# runs only them).
if(CHECK_FOUND)
  add_custom_target(kvfs-unit)
  foreach(t codec opt store index fs tier pool policy gpu fsck meta inoset inomap cmap base)
    add_executable(test_${t} tests/unit/test_${t}.c)
    target_link_libraries(test_${t} PRIVATE kvfscore PkgConfig::CHECK)
    add_test(NAME unit_${t} COMMAND test_${t})
    add_dependencies(kvfs-unit test_${t})
  endforeach()
endif()

# The fake GPU backend (device memory is a shared file) and a raw ioctl
# client let the fast path be tested on machines without a GPU.
add_library(kvfs-gpu-fake MODULE tests/gpu/fake_plugin.c)
target_include_directories(kvfs-gpu-fake PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src/gpu)
set_target_properties(kvfs-gpu-fake PROPERTIES PREFIX "lib"
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_executable(kvfs-test-gpuio tests/gpu/gpuio.c)
target_include_directories(kvfs-test-gpuio PRIVATE ${CMAKE_SOURCE_DIR}/include)
if(CHECK_FOUND)
  target_compile_definitions(test_gpu PRIVATE KVFS_FAKE_PLUGIN="$<TARGET_FILE:kvfs-gpu-fake>")
  add_dependencies(test_gpu kvfs-gpu-fake)
endif()

file(GLOB KVFS_ITESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/test_*.sh)
foreach(t ${KVFS_ITESTS})
  get_filename_component(name ${t} NAME_WE)
  add_test(NAME ${name} COMMAND bash ${t})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 ENVIRONMENT
    "KVFS=$<TARGET_FILE:kvfs>;KVFSCTL=$<TARGET_FILE:kvfsctl>;KV_DATA=${CMAKE_SOURCE_DIR}/tests/data/kv;KVFS_SRC=${CMAKE_SOURCE_DIR};GPU_FAKE=$<TARGET_FILE:kvfs-gpu-fake>;GPUIO=$<TARGET_FILE:kvfs-test-gpuio>")
endforeach()

# Long tests: under ASan on a busy 2-core machine they run for minutes.
foreach(t test_gpu_ioctl test_gpu_data test_crash)
  if(TEST ${t})
    set_tests_properties(${t} PROPERTIES TIMEOUT 900)
  endif()
endforeach()

# The fast path on a real NVIDIA GPU (C, PyTorch and example tests for
# codecs none, lz4 and zstd); skipped with a message where there is none.
add_test(NAME gpu_device COMMAND bash ${CMAKE_SOURCE_DIR}/tests/gpu/device_run.sh ${CMAKE_BINARY_DIR})
set_tests_properties(gpu_device PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)
