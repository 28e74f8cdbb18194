#!/usr/bin/env bash
# The README's main-job command: set up if needed, build, make the demo corpus, train the tiny
# demo model (configs/demo.yaml: two context stages, held-out validation) for a few minutes on the
# CPU, print a generated sample and plot the training and validation loss and the learning rate
# to runs/demo/metrics.png. Re-running resumes (or, when the run is complete, only prints a new
# sample).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/build.sh"
"$root/scripts/prepare_corpus.sh" >/dev/null
"${BUILD_DIR:-build}/bin/rwkv" train configs/demo.yaml "$@"
"$root/.venv/bin/python" scripts/plot_metrics.py runs/demo/metrics.jsonl -o runs/demo/metrics.png
