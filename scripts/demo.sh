#!/usr/bin/env bash
# The README's main-job command: set up if needed, build, and run the demo.
# Until the training loop lands this prints the environment the demo will train in.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/build.sh"
exec "${BUILD_DIR:-build}/bin/rwkv" env
