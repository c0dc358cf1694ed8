# How a devmesh plugin is built, in one place: used by the in-tree plugins (devmesh_plugin() in
# the root CMakeLists.txt) and installed with the SDK (find_package(devmesh) includes it).
# Expects DEVMESH_PLUGIN_VERSION_SCRIPT (the path of plugin.map) and the interface target
# devmesh::plugin_api (the ABI headers) to be defined by whoever includes this file.
include_guard(GLOBAL)

# devmesh_plugin_link_rules(TARGET): makes an existing MODULE library a loadable plugin: no "lib"
# prefix, hidden visibility, only dm_plugin_entry exported (the version script also hides C++
# template instantiations, which -fvisibility=hidden alone leaks), no undefined symbols (a plugin
# links nothing from the engine: every host service comes through the dm_host_api table).
function(devmesh_plugin_link_rules target)
  if(NOT DEVMESH_PLUGIN_VERSION_SCRIPT)
    message(FATAL_ERROR "devmesh_plugin_link_rules: DEVMESH_PLUGIN_VERSION_SCRIPT is not set")
  endif()
  target_link_libraries(${target} PRIVATE devmesh::plugin_api)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${DEVMESH_PLUGIN_VERSION_SCRIPT})
  target_link_options(${target} PRIVATE
    -Wl,--no-undefined -Wl,--version-script=${DEVMESH_PLUGIN_VERSION_SCRIPT})
endfunction()

# devmesh_add_plugin(NAME SOURCES src... [LIBS lib...]): builds NAME.so, a plugin for a devmesh
# of this SDK's ABI major. Load it with plugin_path: in the pipeline, or put it in a plugins_dir.
# C++ sources get C++20 at least (plugin.hpp needs it).
function(devmesh_add_plugin name)
  cmake_parse_arguments(P "" "" "SOURCES;LIBS" ${ARGN})
  if(NOT P_SOURCES)
    set(P_SOURCES ${P_UNPARSED_ARGUMENTS})
  endif()
  if(NOT P_SOURCES)
    message(FATAL_ERROR "devmesh_add_plugin(${name}): no SOURCES")
  endif()
  add_library(${name} MODULE ${P_SOURCES})
  target_link_libraries(${name} PRIVATE ${P_LIBS})
  devmesh_plugin_link_rules(${name})
  get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
  if(CXX IN_LIST languages)
    target_compile_features(${name} PRIVATE cxx_std_20)
  endif()
endfunction()
