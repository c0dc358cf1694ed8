# The installed plugin SDK (cmake --install; alone: --component sdk, as a -dev package would):
# the ABI headers, plugin.map, the CMake package (find_package(devmesh) -> devmesh_add_plugin)
# and devmesh.pc, in a Debian-like layout:
#   include/devmesh/            plugin.h, plugin.hpp (every header of engine/include/devmesh)
#   lib/cmake/devmesh/          devmeshConfig.cmake, its version file, targets, DevmeshPlugin.cmake
#   lib/pkgconfig/devmesh.pc    Cflags, plugindir, version_script, plugin_cflags/ldflags
#   share/devmesh/plugin.map    the version script every plugin links with
#   lib/devmesh/plugins/        the plugins themselves (installed by devmesh_plugin())
# Included by the root CMakeLists.txt before any plugin: it defines devmesh::plugin_api.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(DEVMESH_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/devmesh)
set(DEVMESH_INSTALL_DATADIR ${CMAKE_INSTALL_DATADIR}/devmesh)
# Not CMAKE_INSTALL_LIBDIR: the engine looks for plugins in <prefix>/lib/devmesh/plugins.
set(DEVMESH_INSTALL_PLUGINDIR lib/devmesh/plugins)

# What a plugin compiles against: the ABI headers only, nothing to link.
add_library(devmesh_plugin_api INTERFACE)
add_library(devmesh::plugin_api ALIAS devmesh_plugin_api)
target_include_directories(devmesh_plugin_api INTERFACE
  $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/engine/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(devmesh_plugin_api PROPERTIES EXPORT_NAME plugin_api)

# The ABI major, for the package (DEVMESH_ABI_MAJOR) and devmesh.pc: read from the header.
file(STRINGS ${CMAKE_SOURCE_DIR}/engine/include/devmesh/plugin.h abi_line
  REGEX "^#define DM_ABI_MAJOR [0-9]+")
string(REGEX MATCH "[0-9]+" DEVMESH_ABI_MAJOR "${abi_line}")

# Every public header (engine/include/devmesh holds only what plugins may include).
install(DIRECTORY ${CMAKE_SOURCE_DIR}/engine/include/devmesh
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT sdk
  FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
install(FILES ${DEVMESH_PLUGIN_VERSION_SCRIPT} DESTINATION ${DEVMESH_INSTALL_DATADIR}
  COMPONENT sdk)

install(TARGETS devmesh_plugin_api EXPORT devmeshTargets COMPONENT sdk)
install(EXPORT devmeshTargets NAMESPACE devmesh:: DESTINATION ${DEVMESH_INSTALL_CMAKEDIR}
  COMPONENT sdk)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/devmeshConfig.cmake.in
  ${CMAKE_BINARY_DIR}/sdk/devmeshConfig.cmake
  INSTALL_DESTINATION ${DEVMESH_INSTALL_CMAKEDIR}
  PATH_VARS DEVMESH_INSTALL_DATADIR DEVMESH_INSTALL_PLUGINDIR)
write_basic_package_version_file(${CMAKE_BINARY_DIR}/sdk/devmeshConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_BINARY_DIR}/sdk/devmeshConfig.cmake
  ${CMAKE_BINARY_DIR}/sdk/devmeshConfigVersion.cmake
  ${CMAKE_CURRENT_LIST_DIR}/DevmeshPlugin.cmake
  DESTINATION ${DEVMESH_INSTALL_CMAKEDIR} COMPONENT sdk)

# devmesh.pc names absolute paths, so it is written at install time for the prefix installed to
# (cmake --install --prefix P, not the configured one), straight into place: two installs of one
# build tree to two prefixes at once (parallel tests) share no file. DESTDIR stays out of it.
install(CODE "
  set(DEVMESH_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(DEVMESH_PC_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
  set(DEVMESH_PC_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
  set(DEVMESH_PC_PLUGINDIR \"${DEVMESH_INSTALL_PLUGINDIR}\")
  set(DEVMESH_PC_DATADIR \"${DEVMESH_INSTALL_DATADIR}\")
  set(DEVMESH_PC_ABI_MAJOR \"${DEVMESH_ABI_MAJOR}\")
  set(DEVMESH_PC_VERSION \"${PROJECT_VERSION}\")
  set(devmesh_pc \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/devmesh.pc\")
  message(STATUS \"Installing: \${devmesh_pc}\")
  configure_file(\"${CMAKE_CURRENT_LIST_DIR}/devmesh.pc.in\" \"\${devmesh_pc}\" @ONLY)
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${devmesh_pc}\")
" COMPONENT sdk)
