# Every dependency checked at configure time, before anything compiles: a missing one stops
# cmake with one message naming the Debian package that provides it and the option that turns
# the part needing it off. (A test hides each one with -DCMAKE_DISABLE_FIND_PACKAGE_<name>=ON:
# tests/install/configure_errors.sh.)
list(PREPEND CMAKE_MODULE_PATH ${CMAKE_CURRENT_LIST_DIR})
set(_herd_missing "")
# _herd_missing(<what> <how to fix, in one or more strings>)
macro(_herd_missing what)
  string(APPEND _herd_missing "\n  - ${what}: " ${ARGN})
endmacro()

# Cheap header and library searches first, MPI's compiler probing last.
find_package(uthash QUIET)
if(NOT uthash_FOUND)
  _herd_missing("uthash (uthash.h), used by the engine"
                "apt-get install uthash-dev (or -DUTHASH_INCLUDE_DIR=<dir with uthash.h>)")
elseif(NOT UTHASH_INCLUDE_DIR IN_LIST CMAKE_C_IMPLICIT_INCLUDE_DIRECTORIES)
  include_directories(SYSTEM ${UTHASH_INCLUDE_DIR})
endif()

if(HERD_BUILD_TESTS)
  find_package(CUnit QUIET)
  if(NOT CUnit_FOUND)
    _herd_missing("CUnit (CUnit/Basic.h, libcunit), used by the tests"
                  "apt-get install libcunit1-dev, or configure with -DHERD_BUILD_TESTS=OFF")
  endif()
endif()

if(HERD_WITH_CUDA STREQUAL "ON")
  find_package(CUDAToolkit QUIET)
  if(NOT CUDAToolkit_FOUND)
    _herd_missing("the CUDA toolkit (HERD_WITH_CUDA=ON)"
                  "apt-get install nvidia-cuda-toolkit (or -DCUDAToolkit_ROOT=<prefix>), or "
                  "configure with -DHERD_WITH_CUDA=AUTO or OFF")
  endif()
endif()
if(HERD_WITH_NCCL STREQUAL "ON" AND NOT HERD_WITH_CUDA STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  # The same cache variables src/CMakeLists.txt searches, so it finds what was found here.
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NCCL_HOME
            PATH_SUFFIXES include)
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}
               ENV NCCL_HOME PATH_SUFFIXES lib lib64)
  if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY OR CMAKE_DISABLE_FIND_PACKAGE_NCCL)
    _herd_missing("NCCL (nccl.h, libnccl; HERD_WITH_NCCL=ON)"
                  "apt-get install libnccl-dev (or set NCCL_HOME), or configure with "
                  "-DHERD_WITH_NCCL=AUTO (GPU data staged through MPI when NCCL is missing)")
  endif()
endif()

find_package(MPI QUIET COMPONENTS C)
if(NOT MPI_C_FOUND)
  _herd_missing("MPI (mpi.h and libmpi for C)"
                "apt-get install libopenmpi-dev openmpi-bin (or -DMPI_HOME=<prefix>)")
elseif(HERD_BUILD_TESTS AND NOT MPIEXEC_EXECUTABLE)
  _herd_missing("mpiexec, which runs the multi-rank tests"
                "apt-get install openmpi-bin, or configure with -DHERD_BUILD_TESTS=OFF")
endif()

if(_herd_missing)
  message(FATAL_ERROR "herd cannot be built: missing dependencies${_herd_missing}\n"
                      "(on Debian/Ubuntu, bash scripts/deps.sh installs them all)")
endif()
