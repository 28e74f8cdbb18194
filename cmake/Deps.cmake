# Debian packages (scripts/setup.sh installs the missing ones).
#
# fmt: LibTorch's include/ carries fmt 12 headers, which shadow Debian's fmt 9 headers on every
# target that links torch. Linking Debian's libfmt.so.9 (or spdlog, built against it) under
# those headers mixes two ABIs, so the torch targets use the fmt that LibTorch ships, header-only,
# and spdlog is compiled only in rwkv_log (common/log/CMakeLists.txt), which never sees torch.
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(zstd REQUIRED)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(ICU REQUIRED COMPONENTS uc)  # NFC and Unicode classes for the BPE tokenizer
find_package(Catch2 2 REQUIRED)
find_package(spdlog REQUIRED)  # only in rwkv_log (common/log/CMakeLists.txt)
find_package(Threads REQUIRED)
add_compile_definitions(FMT_HEADER_ONLY=1)

# Gloo: the torch wheel links Gloo in but ships no gloo/ headers, which c10d's
# ProcessGroupGloo.hpp includes. Debian's libgloo-dev supplies them for the declarations only
# (we link no libgloo; the code runs inside libtorch). We touch Gloo objects only through
# shared_ptr and libtorch's own functions, so no Gloo layout is compiled into our code.
find_path(RWKV_GLOO_INCLUDE gloo/algorithm.h)
if(NOT RWKV_GLOO_INCLUDE)
  message(FATAL_ERROR "gloo/algorithm.h not found: install Debian's libgloo-dev (scripts/setup.sh does)")
endif()
