#!/usr/bin/env bash
# The README's test command: set up if needed, build, run every test group through CTest.
# Extra arguments go to ctest (e.g. scripts/test.sh -L model, or -R wkv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/build.sh"
cd "${BUILD_DIR:-build}"
ctest --output-on-failure "$@"
