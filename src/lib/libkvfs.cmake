# SPDX-License-Identifier: Apache-2.0
# libkvfs, the engine-side client of the GPU fast path (include/kvfs/kvfs.h),
# shared and static. It links no GPU runtime: the CUDA driver or the HIP
# runtime is dlopen()ed when a request first needs it.
include(GNUInstallDirs)

add_library(libkvfs_shared SHARED src/lib/libkvfs.c)
add_library(libkvfs_static STATIC src/lib/libkvfs.c)
foreach(t libkvfs_shared libkvfs_static)
  target_include_directories(${t} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_definitions(${t} PRIVATE _GNU_SOURCE)
  target_link_libraries(${t} PRIVATE Threads::Threads ${CMAKE_DL_LIBS})
  set_target_properties(${t} PROPERTIES OUTPUT_NAME kvfs)
endforeach()
set_target_properties(libkvfs_shared PROPERTIES
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})

install(TARGETS libkvfs_shared libkvfs_static
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/kvfs DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
# The Python package (pip install ./src/python installs it properly; this
# copy is for PYTHONPATH=/usr/share/kvfs/python).
install(DIRECTORY src/python/kvfs DESTINATION ${CMAKE_INSTALL_DATADIR}/kvfs/python
  FILES_MATCHING PATTERN "*.py" PATTERN "py.typed")
install(FILES src/python/kvfs_client.py DESTINATION ${CMAKE_INSTALL_DATADIR}/kvfs/python)

# The C example of an engine storing and reloading a whole context; it needs
# the CUDA runtime, so it is built only where the toolkit is found.
find_package(CUDAToolkit QUIET)
if(CUDAToolkit_FOUND)
  add_executable(kvfs-example-gpu examples/gpu_context.c)
  target_link_libraries(kvfs-example-gpu PRIVATE libkvfs_shared CUDA::cudart)
endif()
