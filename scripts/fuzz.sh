#!/usr/bin/env bash
# Runs the coverage-guided fuzzers of tests/fuzz (libFuzzer, ASan + UBSan) over the readers of
# untrusted files, each for a bounded time, starting from the committed seed corpus
# tests/fuzz/corpus/<target>/. Exits non-zero on any crash, sanitizer report, leak, timeout or
# out-of-memory, leaving the input that caused it in build-fuzz/artifacts/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]     default 30 s, every target
#   reproduce:  build-fuzz/fuzz_safetensors build-fuzz/artifacts/fuzz_safetensors-crash-…
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-30}"
shift || true
targets=("$@")
((${#targets[@]})) || targets=(fuzz_unpickler fuzz_safetensors fuzz_binidx)
build="${FUZZ_BUILD_DIR:-build-fuzz}"

say() { printf '[fuzz] %s\n' "$*"; }
command -v clang++ >/dev/null || { echo "[fuzz] error: clang++ not found (Debian: apt-get install clang)" >&2; exit 1; }
[[ -x .venv/bin/python ]] || { echo "[fuzz] error: no .venv: run scripts/setup.sh first" >&2; exit 1; }

if [[ ! -f $build/build.ninja ]]; then
  say "configuring $build (clang, ASan + UBSan + libFuzzer)"
  CC=clang CXX=clang++ cmake -S tests/fuzz -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    >"$build.configure.log" 2>&1 || { cat "$build.configure.log" >&2; exit 1; }
fi
cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${targets[@]}"

mkdir -p "$build/artifacts"
# LibTorch is not instrumented: its one-time allocations at load look like leaks to LeakSanitizer
# at exit, so leak checking runs per input (libFuzzer's -detect_leaks) rather than at exit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
for t in "${targets[@]}"; do
  seeds="tests/fuzz/corpus/${t#fuzz_}"
  work="$build/corpus/$t"   # what this run finds, kept between runs, never committed
  mkdir -p "$work"
  say "$t: ${seconds}s from $seeds"
  if ! "$build/$t" "$work" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -malloc_limit_mb=1024 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$build/artifacts/$t-" >"$build/$t.log" 2>&1; then
    tail -n 60 "$build/$t.log" >&2
    say "$t FAILED (full log: $build/$t.log)"
    status=1
    continue
  fi
  grep -E '^stat::number_of_executed_units|^stat::new_units_added|^stat::peak_rss_mb' "$build/$t.log" |
    sed "s/^/[fuzz] $t /" || true
done
exit $status
