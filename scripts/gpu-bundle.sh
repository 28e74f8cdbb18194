#!/usr/bin/env bash
# Builds the GPU bundle: one folder that runs every GPU check on a bare machine holding only
# python3 with the same torch wheel (2.11.0+cu130), nvcc and the NVIDIA driver: no Debian
# packages, no network (../shared/GPU.md). Copy the folder there and run `run.sh OUT_DIR`.
#   scripts/gpu-bundle.sh [DIR]      default: build/gpu-bundle
# Contents: bin/rwkv and bin/rwkv_tests (stripped), lib.tar.xz (every shared library they need
# that is neither the torch wheel's nor the C/C++ runtime's, unpacked by run.sh with python3's
# tarfile), configs/, data/ (a small byte-token dataset), run.sh. At most 56 MiB.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${BUILD_DIR:-build}"
out="${1:-$build_dir/gpu-bundle}"
limit_mib=56

# Run after the build (scripts/build.sh); the kernels must include sm_90 plus PTX, so that a newer
# GPU JIT-compiles them instead of failing with "no kernel image" (cmake/Cuda.cmake's default).
bin="$build_dir/bin"
[[ -x $bin/rwkv && -x $bin/rwkv_tests ]] || { echo "gpu-bundle: build first (scripts/build.sh): no $bin/rwkv or $bin/rwkv_tests" >&2; exit 1; }
grep -q "9.0+PTX" <("$bin/rwkv" env) || { echo "gpu-bundle: $bin/rwkv is not built for 9.0+PTX ('rwkv env')" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/bin" "$out/configs" "$out/data"
strip --strip-unneeded -o "$out/bin/rwkv" "$bin/rwkv"
strip --strip-unneeded -o "$out/bin/rwkv_tests" "$bin/rwkv_tests"

# The libraries: what ldd resolves, minus the torch wheel (torch/lib, nvidia/*) and the CUDA
# toolkit's runtime (the wheel has its own libcudart), minus glibc and the GCC runtime, which the
# target has in a newer version.
libs="$(mktemp -d)"
trap 'rm -rf "$libs"' EXIT
system='^(ld-linux.*|linux-vdso.*|libc|libm|libdl|libpthread|librt|libutil|libresolv|libgcc_s|libstdc\+\+)\.so'
ldd "$bin/rwkv" "$bin/rwkv_tests" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    [[ $path == *site-packages* || $path == /usr/local/cuda* ]] && continue
    [[ $name =~ $system ]] && continue
    cp -L "$path" "$libs/$name"
  done
tar -C "$libs" -cf - . | xz -T0 -6 >"$out/lib.tar.xz"

cp configs/*.yaml scripts/gpu-bundle/bundle-train.yaml "$out/configs/"
cp scripts/gpu-bundle/run.sh "$out/run.sh"
chmod +x "$out/run.sh"
# The training check's data: this repo's READMEs as bytes (the run needs ~20k tokens).
cat README.md */README.md >"$libs/corpus.txt"
"$bin/rwkv" prep "$libs/corpus.txt" -o "$out/data/bundle_byte" --tokenizer byte --quiet

size_mib=$(( $(du -sb "$out" | cut -f1) / 1048576 ))
if (( size_mib > limit_mib )); then
  echo "gpu-bundle: $out is $size_mib MiB, over the $limit_mib MiB limit" >&2
  exit 1
fi
echo "gpu-bundle: $out ($size_mib MiB): copy it to the GPU machine and run: $out/run.sh OUT_DIR"
