# FindCUnit: the CUnit test framework (Debian: libcunit1-dev). Sets CUnit_FOUND,
# CUNIT_INCLUDE_DIR and CUNIT_LIBRARY (the names tests/CMakeLists.txt uses).
find_path(CUNIT_INCLUDE_DIR CUnit/Basic.h DOC "Directory holding CUnit/Basic.h")
find_library(CUNIT_LIBRARY cunit DOC "The CUnit library")
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUnit REQUIRED_VARS CUNIT_LIBRARY CUNIT_INCLUDE_DIR)
