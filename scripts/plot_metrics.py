#!/usr/bin/env python3
"""Plot training and validation loss (and the learning rate) of one or several runs to one PNG.

usage: plot_metrics.py RUN [RUN ...] [-o out.png] [--labels a,b,...]

Each RUN is a run directory or its metrics.jsonl (written by `rwkv train`). Training records
carry `loss` and `lr`; validation records (the config's validation: section) carry `val_loss`
and `val_ctx_len` (trainer/train/metrics.h). The top panel draws every run's training loss as a
line and its validation loss as markers on a dashed line, in one colour per run; the bottom panel
the learning rate; dotted lines mark stage boundaries. One line per run on stdout says what was
read, then the path of the picture.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_run(arg):
    """(training records, validation records) of a run directory or metrics.jsonl."""
    path = os.path.join(arg, "metrics.jsonl") if os.path.isdir(arg) else arg
    train, val = [], []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    print(f"{path}:{n}: skipped an unreadable line", file=sys.stderr)
                    continue
                if "val_loss" in r:
                    val.append(r)
                elif "loss" in r:
                    train.append(r)
    except OSError as e:
        raise SystemExit(f"plot_metrics.py: {path}: cannot read: {e.strerror}")
    if not train and not val:
        raise SystemExit(f"plot_metrics.py: {path}: no metrics records")
    return path, train, val


def default_label(path):
    parent = os.path.dirname(os.path.abspath(path))
    return os.path.basename(parent) or path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories or metrics.jsonl files")
    ap.add_argument("-o", "--output", help="PNG to write (default with one run: metrics.png beside its metrics.jsonl)")
    ap.add_argument("--labels", help="comma-separated legend names, one per run (default: the run directory names)")
    args = ap.parse_args()
    runs = [read_run(r) for r in args.runs]
    labels = args.labels.split(",") if args.labels else [default_label(p) for p, _, _ in runs]
    if len(labels) != len(runs):
        raise SystemExit(f"plot_metrics.py: --labels names {len(labels)} runs, {len(runs)} given")
    if args.output:
        out = args.output
    elif len(runs) == 1:
        out = os.path.join(os.path.dirname(runs[0][0]), "metrics.png")
    else:
        raise SystemExit("plot_metrics.py: several runs: give the picture's path with -o")

    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, sharex=True, figsize=(9, 7), gridspec_kw={"height_ratios": [3, 1]})
    for i, ((path, train, val), label) in enumerate(zip(runs, labels)):
        colour = f"C{i % 10}"
        if train:
            steps = [r["step"] for r in train]
            ax_loss.plot(steps, [r["loss"] for r in train], color=colour, label=f"{label} training")
            ax_lr.plot(steps, [r["lr"] for r in train], color=colour)
        if val:
            ax_loss.plot([r["step"] for r in val], [r["val_loss"] for r in val], color=colour, linestyle="--",
                         marker="o", markersize=4, label=f"{label} validation")
        records = sorted(train + val, key=lambda r: r["step"])
        for a, b in zip(records, records[1:]):
            if a["stage"] != b["stage"]:
                for ax in (ax_loss, ax_lr):
                    ax.axvline(a["step"], color=colour, linestyle=":", alpha=0.6)
        last = (f", last validation loss {val[-1]['val_loss']:.4f} at step {val[-1]['step']} "
                f"(ctx_len {val[-1]['val_ctx_len']})") if val else ""
        print(f"{label}: {len(train)} training records, {len(val)} validation records{last}")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
