#!/usr/bin/env python3
"""Plot loss and learning rate from a run's metrics.jsonl (written by `rwkv train`) to a PNG.

usage: plot_metrics.py RUN_DIR/metrics.jsonl [-o out.png]
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", help="metrics.jsonl of a run")
    ap.add_argument("-o", "--output", help="PNG to write (default: next to the metrics file)")
    args = ap.parse_args()
    rows = []
    with open(args.metrics) as f:
        for n, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                print(f"{args.metrics}:{n}: skipped an unreadable line", file=sys.stderr)
    if not rows:
        print(f"{args.metrics}: no metrics records", file=sys.stderr)
        return 1
    steps = [r["step"] for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    ax_loss.plot(steps, [r["loss"] for r in rows])
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(steps, [r["lr"] for r in rows], color="tab:orange")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    for boundary in [s for a, b, s in zip(rows, rows[1:], steps[1:]) if a["stage"] != b["stage"]]:
        for ax in (ax_loss, ax_lr):
            ax.axvline(boundary, color="gray", linestyle=":")
    fig.tight_layout()
    out = args.output or args.metrics.rsplit(".", 1)[0] + ".png"
    fig.savefig(out, dpi=100)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
