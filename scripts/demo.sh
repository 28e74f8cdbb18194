#!/usr/bin/env bash
# The README's main-job command: set up if needed, build, make the demo corpus, train the tiny
# demo model (configs/demo.yaml) for a few minutes on the CPU, print a generated sample and plot
# the loss and learning-rate curves to runs/demo/metrics.png. Re-running resumes (or, when the
# run is complete, only prints a new sample).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/build.sh"
"$root/scripts/prepare_corpus.sh" >/dev/null
"${BUILD_DIR:-build}/bin/rwkv" train configs/demo.yaml "$@"
"$root/.venv/bin/python" scripts/plot_metrics.py runs/demo/metrics.jsonl -o runs/demo/metrics.png
