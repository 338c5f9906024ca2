# Unit tests (Check) and integration tests on a real mount.
if(CHECK_FOUND)
  foreach(t codec opt store index fs tier pool policy)
    add_executable(test_${t} tests/unit/test_${t}.c)
    target_link_libraries(test_${t} PRIVATE kvfscore PkgConfig::CHECK)
    add_test(NAME unit_${t} COMMAND test_${t})
  endforeach()
endif()

file(GLOB KVFS_ITESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/test_*.sh)
foreach(t ${KVFS_ITESTS})
  get_filename_component(name ${t} NAME_WE)
  add_test(NAME ${name} COMMAND bash ${t})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 ENVIRONMENT
    "KVFS=$<TARGET_FILE:kvfs>;KVFSCTL=$<TARGET_FILE:kvfsctl>;KV_DATA=${CMAKE_SOURCE_DIR}/tests/data/kv;KVFS_SRC=${CMAKE_SOURCE_DIR}")
endforeach()
