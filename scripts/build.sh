#!/usr/bin/env bash
# Set up if needed, then build everything (incremental; ccache makes cold rebuilds cheap).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
cmake --build "${BUILD_DIR:-build}" -j "${JOBS:-$(nproc)}"
