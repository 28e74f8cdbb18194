# ccache for C++ and CUDA. The sloppiness settings let ccache cache translation units that use
# the precompiled torch header (CMake passes it with -include; see ccache's manual on PCH).
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  # CCACHE_BASEDIR makes paths relative, so separate checkouts (git worktrees) share the cache.
  set(_ccache env CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
              CCACHE_BASEDIR=${PROJECT_SOURCE_DIR} ${CCACHE_PROGRAM})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_ccache})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_ccache})
else()
  message(STATUS "ccache not found: rebuilds will be slow (scripts/setup.sh installs it)")
endif()
