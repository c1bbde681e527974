# Finduthash: the header-only uthash (Debian: uthash-dev). Sets uthash_FOUND, UTHASH_INCLUDE_DIR.
find_path(UTHASH_INCLUDE_DIR uthash.h DOC "Directory holding uthash.h")
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(uthash REQUIRED_VARS UTHASH_INCLUDE_DIR)
