# Included by the interface packages' CMakeLists.txt when they are built against the ROS 2 pip
# wheels (scripts/build_interfaces.sh); harmless on a real ROS install, where nothing matches.
#
# The message wheels' exported CMake targets (<pkg>::<pkg>__rosidl_generator_py) carry the include
# directories of the machine the wheels were built on, e.g.
#   /opt/python/cp311-cp311/include/python3.11
#   /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
# CMake refuses to generate with a non-existent path in an imported target's
# INTERFACE_INCLUDE_DIRECTORIES. At the end of the top-level directory (after every find_package,
# including those that rosidl_generate_interfaces makes), each imported target's missing include
# directories are replaced: a Python include directory by this interpreter's, a numpy include
# directory by this numpy's, anything else missing is dropped (and listed in the output).

function(_molmomotion_fix_wheel_targets)
  if(NOT Python3_EXECUTABLE)
    find_package(Python3 REQUIRED COMPONENTS Interpreter)
  endif()
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c
      "import sysconfig, numpy; print(sysconfig.get_paths()['include'] + ';' + numpy.get_include())"
    OUTPUT_VARIABLE _paths OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "wheel_fixups: ${Python3_EXECUTABLE} could not report its include paths")
  endif()
  list(GET _paths 0 _python_include)
  list(GET _paths 1 _numpy_include)

  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_dropped)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new)
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
        list(APPEND _new "${_dir}")
        continue()
      endif()
      set(_changed TRUE)
      if(_dir MATCHES "/include/python[0-9.]+$")
        list(APPEND _new "${_python_include}")
      elseif(_dir MATCHES "/numpy/(_core|core)/include$")
        list(APPEND _new "${_numpy_include}")
      else()
        list(APPEND _dropped "${_target}: ${_dir}")
      endif()
    endforeach()
    if(_changed)
      list(REMOVE_DUPLICATES _new)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
    endif()
  endforeach()
  if(_dropped)
    list(JOIN _dropped "\n  " _text)
    message(STATUS "wheel_fixups: dropped missing include directories:\n  ${_text}")
  endif()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _molmomotion_fix_wheel_targets)
