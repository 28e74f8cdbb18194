#!/usr/bin/env bash
# One-time (and idempotent) setup: Debian packages, the project venv with the LibTorch wheel and
# the Python references, and a configured build directory. A second run does nothing but check.
#   scripts/setup.sh            set up ./.venv and ./build
#   BUILD_DIR=build-debug CMAKE_BUILD_TYPE=Debug scripts/setup.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${BUILD_DIR:-build}"

say() { printf '[setup] %s\n' "$*"; }

# --- Debian packages --------------------------------------------------------------------------
pkgs=(build-essential cmake ninja-build ccache pkg-config python3-venv libyaml-cpp-dev catch2
      libhdf5-dev nlohmann-json3-dev libcli11-dev libzstd-dev zstd libgloo-dev
      libicu-dev libspdlog-dev bible-kjv clang libclang-rt-14-dev)  # bible-kjv: the demo corpus (scripts/prepare_corpus.sh); clang: tests/fuzz
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "[setup] error: missing Debian packages: ${missing[*]}" >&2
    echo "[setup] install them as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python venv: the torch wheel is our LibTorch ---------------------------------------------
py="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  "$py" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  say "installing requirements.txt into .venv (the CUDA torch wheel is several GB; minutes)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

# --- configure the build ------------------------------------------------------------------------
if [[ ! -f $build_dir/build.ninja ]]; then
  say "configuring $build_dir"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" \
    ${CMAKE_ARGS:-} >"$build_dir.configure.log" 2>&1 || { cat "$build_dir.configure.log" >&2; exit 1; }
fi
say "ready: venv .venv, build dir $build_dir"
