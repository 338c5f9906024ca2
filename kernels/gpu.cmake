# SPDX-License-Identifier: Apache-2.0
# The GPU backend plugins, libkvfs-gpu-cuda.so and libkvfs-gpu-hip.so, that
# the daemon dlopen()s (src/gpu/gpu_plugin.h). Both come from kernels/kvfs_gpu.cpp.
#
# They hold no device code, so nvcc and hipcc run here as plain custom
# commands instead of through enable_language(CUDA/HIP): CMake 3.25 does not
# know CUDA 13's architectures, its HIP language wants ROCm's own clang
# rather than Debian's hipcc, and either would fail the whole configure where
# AUTO must only skip a plugin. The plugins land next to the kvfs binary,
# where the daemon looks first, and install to ${KVFS_GPU_PLUGIN_DIR}.
#
# KVFS_GPU_CUDA / KVFS_GPU_HIP: AUTO builds a plugin when its compiler (and
# for CUDA the libcuda stub) is found, ON requires it, OFF skips it.

include(GNUInstallDirs)

set(KVFS_GPU_CUDA AUTO CACHE STRING "Build the CUDA GPU plugin: AUTO, ON or OFF")
set(KVFS_GPU_HIP AUTO CACHE STRING "Build the HIP GPU plugin: AUTO, ON or OFF")
set_property(CACHE KVFS_GPU_CUDA KVFS_GPU_HIP PROPERTY STRINGS AUTO ON OFF)
set(CMAKE_HIP_ARCHITECTURES gfx90a CACHE STRING
  "AMD GPU targets of the HIP plugin (;-list, each passed as --offload-arch)")
set(KVFS_GPU_PLUGIN_DIR ${CMAKE_INSTALL_LIBDIR}/kvfs)

set(KVFS_GPU_SRC ${CMAKE_SOURCE_DIR}/kernels/kvfs_gpu.cpp)
set(KVFS_GPU_DEPS ${KVFS_GPU_SRC} ${CMAKE_SOURCE_DIR}/kernels/hip_cuda.h
  ${CMAKE_SOURCE_DIR}/src/gpu/gpu_plugin.h ${CMAKE_SOURCE_DIR}/include/kvfs/ioctl.h)
# Host flags for both compilers: no exceptions or RTTI (the plugin is C
# behind a C table) and only kvfs_gpu_plugin_v1 exported.
set(KVFS_GPU_HOST_FLAGS -fPIC -Wall -Wextra -fvisibility=hidden -fno-exceptions -fno-rtti)
if(KVFS_WERROR)
  list(APPEND KVFS_GPU_HOST_FLAGS -Werror)
endif()
set(KVFS_GPU_COMMON_FLAGS -std=c++20 -O2 -g -shared
  -I${CMAKE_SOURCE_DIR}/src/gpu -I${CMAKE_SOURCE_DIR}/include)

# Sets ${out} to TRUE when plugin ${name} should be built, per the
# AUTO/ON/OFF option ${opt}; ${compiler} is empty when ${needs} are missing.
function(kvfs_gpu_wanted name opt compiler needs out)
  string(TOUPPER "${${opt}}" mode)
  if(mode STREQUAL "AUTO")
    if(NOT compiler)
      message(STATUS "kvfs: ${name} GPU plugin skipped (${opt}=AUTO, ${needs} not found)")
    endif()
    set(want ${compiler})
  elseif(mode MATCHES "^(ON|YES|TRUE|Y|1)$")
    if(NOT compiler)
      message(FATAL_ERROR "kvfs: ${opt}=ON but ${needs} not found")
    endif()
    set(want TRUE)
  elseif(mode MATCHES "^(OFF|NO|FALSE|N|0)$")
    set(want FALSE)
  else()
    message(FATAL_ERROR "kvfs: ${opt} must be AUTO, ON or OFF, not '${${opt}}'")
  endif()
  if(want)
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

# Builds ${CMAKE_BINARY_DIR}/libkvfs-gpu-${name}.so by running the given
# compiler command line on kvfs_gpu.cpp, and installs it.
function(kvfs_gpu_plugin name)
  set(lib ${CMAKE_BINARY_DIR}/libkvfs-gpu-${name}.so)
  add_custom_command(OUTPUT ${lib}
    COMMAND ${ARGN} ${KVFS_GPU_SRC} -o ${lib}
    DEPENDS ${KVFS_GPU_DEPS}
    COMMENT "Building GPU plugin libkvfs-gpu-${name}.so"
    VERBATIM)
  add_custom_target(kvfs-gpu-${name} ALL DEPENDS ${lib})
  install(FILES ${lib} DESTINATION ${KVFS_GPU_PLUGIN_DIR})
  message(STATUS "kvfs: building ${name} GPU plugin with ${ARGV1}")
endfunction()

find_program(KVFS_NVCC nvcc HINTS $ENV{CUDA_HOME}/bin $ENV{CUDA_PATH}/bin /usr/local/cuda/bin)
# libcuda is linked through the toolkit's stub, so building needs no driver.
# nvcc may be a wrapper script outside the toolkit, hence the fixed hints.
if(KVFS_NVCC)
  get_filename_component(kvfs_cuda_root "${KVFS_NVCC}" REALPATH)
  get_filename_component(kvfs_cuda_root "${kvfs_cuda_root}" DIRECTORY)
  find_library(KVFS_LIBCUDA cuda HINTS ${kvfs_cuda_root}/../lib64/stubs
    $ENV{CUDA_HOME}/lib64/stubs $ENV{CUDA_PATH}/lib64/stubs /usr/local/cuda/lib64/stubs)
endif()
if(KVFS_NVCC AND KVFS_LIBCUDA)
  set(kvfs_cuda_tools ${KVFS_NVCC})
endif()
kvfs_gpu_wanted(CUDA KVFS_GPU_CUDA "${kvfs_cuda_tools}" "nvcc or the libcuda stub"
  KVFS_BUILD_CUDA)
if(KVFS_BUILD_CUDA)
  # cudart is linked statically (nvcc's default), so the plugin needs only
  # the driver's libcuda.so.1 at run time: CUDA's runtime libraries are
  # rarely on the loader's path of a GPU host, and the daemon then never
  # mixes with whatever cudart the inference engine ships.
  list(JOIN KVFS_GPU_HOST_FLAGS "," kvfs_cuda_xcompiler)
  kvfs_gpu_plugin(cuda ${KVFS_NVCC} ${KVFS_GPU_COMMON_FLAGS} -DKVFS_PLUGIN_CUDA
    -Xcompiler=${kvfs_cuda_xcompiler} -cudart=static ${KVFS_LIBCUDA}
    -Xlinker=--exclude-libs,ALL -Xlinker=--as-needed -Xlinker=-z,defs)
endif()

find_program(KVFS_HIPCC hipcc HINTS $ENV{ROCM_PATH}/bin /opt/rocm/bin)
kvfs_gpu_wanted(HIP KVFS_GPU_HIP "${KVFS_HIPCC}" "hipcc" KVFS_BUILD_HIP)
if(KVFS_BUILD_HIP)
  list(TRANSFORM CMAKE_HIP_ARCHITECTURES PREPEND --offload-arch= OUTPUT_VARIABLE kvfs_hip_archs)
  kvfs_gpu_plugin(hip ${KVFS_HIPCC} ${KVFS_GPU_COMMON_FLAGS} -DKVFS_PLUGIN_HIP
    ${kvfs_hip_archs} ${KVFS_GPU_HOST_FLAGS} -Wl,--as-needed -Wl,-z,defs)
endif()
