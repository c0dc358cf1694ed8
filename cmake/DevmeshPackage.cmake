# The Debian package (tools/package: cpack -G DEB on a Release build with the prefix /usr):
#   /usr/bin/devmesh, /usr/lib/devmesh/plugins/*.so      (the engine's own install rules)
#   the plugin SDK (include/, lib/cmake/devmesh, devmesh.pc)   (cmake/DevmeshSdk.cmake)
#   /etc/devmesh/{standalone,sidecar,aggregator}.yaml   conffiles (conf/)
#   /etc/default/devmesh-<role>                          conffiles, root-only: the variables
#   /usr/lib/systemd/system/devmesh{,-sidecar,-aggregator}.service
#   /usr/share/doc/devmesh/{README.md,copyright,changelog.gz}
# and the maintainer scripts of packaging/debian (the devmesh user, systemd reloads, purge).
# Runtime dependencies are what dpkg-shlibdeps finds in the ELF files, plus what the
# maintainer scripts run. Included by the root CMakeLists.txt after every install rule, only with
# -DDEVMESH_PACKAGE=ON: its /etc destinations are absolute, and a plain cmake --install into a
# temporary prefix (the SDK tests) must not write to the machine's /etc.

# /etc, not <prefix>/etc: a package's configuration lives there whatever the prefix.
set(DEVMESH_PACKAGE_ETC /etc)
set(DEVMESH_PACKAGE_DIR ${CMAKE_SOURCE_DIR}/packaging)
set(DEVMESH_PACKAGE_ROLES standalone sidecar aggregator)

foreach(role ${DEVMESH_PACKAGE_ROLES})
  install(FILES ${CMAKE_SOURCE_DIR}/conf/${role}.yaml DESTINATION ${DEVMESH_PACKAGE_ETC}/devmesh
    COMPONENT service)
  # They hold DB_PASSWORD and DEVMESH_TOKEN: systemd reads them as root.
  install(FILES ${DEVMESH_PACKAGE_DIR}/default/devmesh-${role}
    DESTINATION ${DEVMESH_PACKAGE_ETC}/default PERMISSIONS OWNER_READ OWNER_WRITE
    COMPONENT service)
endforeach()
install(FILES ${DEVMESH_PACKAGE_DIR}/systemd/devmesh.service
  ${DEVMESH_PACKAGE_DIR}/systemd/devmesh-sidecar.service
  ${DEVMESH_PACKAGE_DIR}/systemd/devmesh-aggregator.service
  DESTINATION lib/systemd/system COMPONENT service)

# Who answers for the package (Debian's Maintainer field and the changelog's trailer).
set(DEVMESH_PACKAGE_MAINTAINER "devmesh maintainers <maintainers@devmesh.example.org>" CACHE STRING
  "Maintainer of the Debian package")

# Debian's documentation files: copyright and a compressed changelog (gzip -n: reproducible).
set(devmesh_doc_dir ${CMAKE_INSTALL_DATADIR}/doc/devmesh)
set(devmesh_changelog ${CMAKE_BINARY_DIR}/package/changelog.gz)
string(TIMESTAMP devmesh_changelog_date "%a, %d %b %Y %H:%M:%S +0000" UTC)
file(WRITE ${CMAKE_BINARY_DIR}/package/changelog
  "devmesh (${PROJECT_VERSION}) unstable; urgency=medium\n\n"
  "  * Release ${PROJECT_VERSION}: see README.md, \"Upgrading from the previous release\".\n\n"
  " -- ${DEVMESH_PACKAGE_MAINTAINER}  ${devmesh_changelog_date}\n")
find_program(GZIP_PROGRAM gzip)
if(GZIP_PROGRAM)
  execute_process(COMMAND ${GZIP_PROGRAM} -9nf ${CMAKE_BINARY_DIR}/package/changelog)
  install(FILES ${devmesh_changelog} DESTINATION ${devmesh_doc_dir} COMPONENT service)
endif()
install(FILES ${DEVMESH_PACKAGE_DIR}/debian/copyright ${CMAKE_SOURCE_DIR}/README.md
  DESTINATION ${devmesh_doc_dir} COMPONENT service)

set(CPACK_PACKAGE_NAME devmesh)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "devmesh")
set(CPACK_PACKAGE_CONTACT "${DEVMESH_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "log pipeline engine with plugins and YAML pipelines")
# CPack puts the summary first and indents these lines ("." for the empty one).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "devmesh reads logs (the systemd journal, HTTP ingestion), filters them and
delivers them (MariaDB, SQLite, HTTP forwarding, files) without losing a
record: inputs, filters and outputs are plugins loaded at start, wired by a
YAML pipeline.

This package ships the engine, its plugins, the plugin SDK and systemd units
for a standalone node, a sidecar on every node and a central aggregator.")
set(CPACK_GENERATOR DEB)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # devmesh_VERSION_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The libraries the ELF files link (dpkg-shlibdeps), never build tools; adduser for the
# maintainer scripts (init-system-helpers' deb-systemd-invoke is essential: not listed), procps
# for the units' ExecReload=/bin/kill.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, procps")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${DEVMESH_PACKAGE_DIR}/debian/conffiles
  ${DEVMESH_PACKAGE_DIR}/debian/postinst
  ${DEVMESH_PACKAGE_DIR}/debian/prerm
  ${DEVMESH_PACKAGE_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# One package: the engine, the plugins, the SDK and the service files together.
set(CPACK_DEB_COMPONENT_INSTALL OFF)
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
include(CPack)
