# What the Python package reports as herd.build_info() (python -m herd --version): a JSON file
# written beside libherd in the build tree (build/src/herd_build_info.json), found next to
# whichever libherd Python loads. Under scikit-build-core (pip install . / pip wheel .) the
# library and this file are installed inside the herd package instead of lib/ and include/.
file(STRINGS ${PROJECT_SOURCE_DIR}/include/herd.h _herd_abi_line
     REGEX "^#define HERD_ABI_VERSION [0-9]+")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" HERD_ABI_VERSION "${_herd_abi_line}")
set(_herd_nccl false)
if(HERD_GPU_ENABLED AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY AND NOT HERD_WITH_NCCL STREQUAL "OFF")
  set(_herd_nccl true)
endif()
if(HERD_GPU_ENABLED)
  set(_herd_cuda true)
else()
  set(_herd_cuda false)
endif()
string(REPLACE ";" " " _herd_mpi_libs "${MPI_C_LIBRARIES}")
set(HERD_BUILD_INFO_JSON "{
  \"version\": \"${PROJECT_VERSION}\",
  \"abi_version\": ${HERD_ABI_VERSION},
  \"build_type\": \"${CMAKE_BUILD_TYPE}\",
  \"c_compiler\": \"${CMAKE_C_COMPILER_ID} ${CMAKE_C_COMPILER_VERSION}\",
  \"mpi_version\": \"${MPI_C_VERSION}\",
  \"mpi_libraries\": \"${_herd_mpi_libs}\",
  \"mpiexec\": \"${MPIEXEC_EXECUTABLE}\",
  \"with_cuda_option\": \"${HERD_WITH_CUDA}\",
  \"cuda\": ${_herd_cuda},
  \"nccl\": ${_herd_nccl}
}
")
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/src/herd_build_info.json
     CONTENT "${HERD_BUILD_INFO_JSON}")

if(SKBUILD)
  # One file, named by the SONAME, so that a compiled op linked against libherd.so.N with
  # RPATH $ORIGIN finds the copy Python loaded. Wheels cannot hold symlinks.
  install(FILES $<TARGET_FILE:herd> DESTINATION herd RENAME libherd.so.${HERD_SOVERSION})
  install(FILES ${PROJECT_BINARY_DIR}/src/herd_build_info.json DESTINATION herd)
  if(TARGET herd_tf_ops)
    install(TARGETS herd_tf_ops LIBRARY DESTINATION herd)
  endif()
endif()
