# install(EXPORT) with the frugal:: namespace, a relocatable frugalConfig.cmake, a
# SameMajorVersion version file, and a build-tree export for use without installing.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(FRUGAL_CONFIG_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/frugal")
set(_frugal_targets frugal frugal_sim frugal_ucx)
if(TARGET frugal_cuda)
  list(APPEND _frugal_targets frugal_cuda)
endif()
get_filename_component(FRUGAL_CCCL_DIR "${CCCL_DIR}" ABSOLUTE)

configure_package_config_file(cmake/frugalConfig.cmake.in
  "${PROJECT_BINARY_DIR}/frugalConfig.cmake"
  INSTALL_DESTINATION "${FRUGAL_CONFIG_INSTALL_DIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/frugalConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)

export(TARGETS ${_frugal_targets} NAMESPACE frugal::
       FILE "${PROJECT_BINARY_DIR}/frugalTargets.cmake")

if(FRUGAL_INSTALL)
  install(TARGETS ${_frugal_targets} EXPORT frugalTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
          INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(DIRECTORY include/frugal DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT frugalTargets NAMESPACE frugal:: DESTINATION "${FRUGAL_CONFIG_INSTALL_DIR}")
  install(FILES "${PROJECT_BINARY_DIR}/frugalConfig.cmake"
                "${PROJECT_BINARY_DIR}/frugalConfigVersion.cmake"
          DESTINATION "${FRUGAL_CONFIG_INSTALL_DIR}")
endif()
