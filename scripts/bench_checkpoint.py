#!/usr/bin/env python3
"""Sharded checkpoint saves on the CPU (trainer/README.md "Checkpoints"), 1 rank vs W Gloo ranks, in one run.

For each rank count W it trains a model of L layers x D channels for a few steps with a checkpoint
every few steps, its ranks started directly (as torchrun would, without its agent), twice:
  checkpoint.async=false  rank 0's anonymous resident memory (/proc/PID/status RssAnon: what it
                          allocated, not the library code it pages in) is sampled at ~1 kHz from
                          the moment the last step is logged (the run's final save starts) until
                          its COMPLETE exists: the peak minus the first sample is rank 0's extra
                          memory for the save (no training step follows to blur it), set against
                          its own shard file's size;
  checkpoint.async=true   rank 0's note lines give how long the loop was blocked per save (the
                          copy, and any wait for the write before: "max waited" shows it stayed 0
                          when saves are further apart than a write lasts) and how long the write
                          took in the background.
Prints one table; the W=1 row is the peer (one rank writes everything).
  .venv/bin/python scripts/bench_checkpoint.py                     (after scripts/build.sh)
  .venv/bin/python scripts/bench_checkpoint.py --layers 8 --embd 768 --ranks 1 2 4
"""
import argparse
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def lines(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def train(binary, config, run, ranks, sets, sample_saves=()):
    """Runs `rwkv train` on `ranks` processes; returns (rank 0's output, {step: extra bytes})."""
    port = free_port()
    procs = []
    for r in range(ranks):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        if ranks > 1:
            env.update(RANK=str(r), WORLD_SIZE=str(ranks), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port))
        cmd = [binary, "train", config, "--set", f"train.run_dir={run}"] + [a for s in sets for a in ("--set", s)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE if r == 0 else subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT, text=True))
    extra = {}
    metrics = os.path.join(run, "metrics.jsonl")
    for step in sample_saves:
        while lines(metrics) < step and procs[0].poll() is None:
            time.sleep(0.0005)
        base = rss_bytes(procs[0].pid)
        peak = base or 0
        done = os.path.join(run, "checkpoints", f"step-{step:08d}", "COMPLETE")
        while not os.path.exists(done) and procs[0].poll() is None:
            peak = max(peak, rss_bytes(procs[0].pid) or 0)
            time.sleep(0.001)
        if base is not None:
            extra[step] = peak - base
    out = procs[0].communicate()[0]
    for p in procs[1:]:
        p.wait()
    if any(p.returncode for p in procs):
        sys.exit(f"bench_checkpoint: rwkv train on {ranks} rank(s) failed:\n{out}")
    return out, extra


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--embd", type=int, default=512)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--every", type=int, default=6, help="steps between checkpoints (more than a write lasts)")
    ap.add_argument("--steps", type=int, default=18, help="steps per run")
    ap.add_argument("--zero-stage", type=int, default=2)
    ap.add_argument("--binary", default=os.path.join(ROOT, os.environ.get("BUILD_DIR", "build"), "bin", "rwkv"))
    args = ap.parse_args()
    accum = 1
    for w in args.ranks:
        accum = accum * w // math.gcd(accum, w)  # every rank count shares the micro-batches
    tmp = tempfile.mkdtemp(prefix="rwkv-bench-ckpt-")
    try:
        os.makedirs(os.path.join(tmp, "text"))
        with open(os.path.join(tmp, "text", "a.txt"), "w") as f:
            for i in range(3000):
                f.write(f"pack my box with {i % 23} dozen liquor jugs; {i % 7}\n")
        subprocess.run([args.binary, "prep", os.path.join(tmp, "text"), "-o", os.path.join(tmp, "tok"), "--tokenizer",
                        "byte", "--quiet"], check=True, stdout=subprocess.DEVNULL)
        config = os.path.join(tmp, "run.yaml")
        with open(config, "w") as f:
            f.write(f"""model: {{n_layer: {args.layers}, n_embd: {args.embd}, vocab_size: 256}}
data: {{path: "{os.path.join(tmp, 'tok')}", ctx_len: 16}}
train: {{run_dir: unset, micro_batch: 1, grad_accum: {accum}, epoch_samples: {4 * accum}, epoch_count: 1000,
        max_steps: {args.steps}, device: cpu, threads: 1, dist_timeout_s: 600, seed: 3}}
optimizer: {{lr_init: 1.0e-4, warmup_steps: 0}}
checkpoint: {{every_steps: {args.every}, keep: 2}}
log: {{every_steps: 1}}
""")
        rows = []
        for w in args.ranks:
            zero = [f"train.zero_stage={args.zero_stage if w > 1 else 0}"]
            run = os.path.join(tmp, f"sync{w}")
            _, extra = train(args.binary, config, run, w, zero + ["checkpoint.async=false"], [args.steps])
            ck = os.path.join(run, "checkpoints", f"step-{args.steps:08d}")
            shard = os.path.getsize(os.path.join(ck, f"shard-00000-of-{w:05d}.safetensors"))
            total = sum(os.path.getsize(os.path.join(ck, n)) for n in os.listdir(ck))
            out, _ = train(args.binary, config, os.path.join(tmp, f"async{w}"), w, zero + ["checkpoint.async=true"])
            notes = re.findall(r"the loop was blocked ([0-9.]+) s \(([0-9.]+) s of it waiting for the write before\), "
                               r"the write took ([0-9.]+) s", out)
            blocked = statistics.median(float(b) for b, _, _ in notes)
            waited = max(float(x) for _, x, _ in notes)
            write = statistics.median(float(x) for _, _, x in notes)
            rows.append((w, total, shard, extra[args.steps], blocked, waited, write))
        print(f"model L={args.layers} D={args.embd}; write and blocked times: medians over the "
              f"{args.steps // args.every} saves of a run; ZeRO-{args.zero_stage} for W > 1")
        print(f"{'ranks':>5} {'ckpt MiB':>9} {'rank-0 shard MiB':>17} {'rank-0 extra MiB':>17} {'extra/shard':>12} "
              f"{'write s':>8} {'vs 1 rank':>10} {'blocked s':>10} {'blocked/write':>14} {'max waited s':>13}")
        one_write = rows[0][6] if rows[0][0] == 1 else None
        for w, total, shard, extra, blocked, waited, write in rows:
            mib = 1 << 20
            vs = f"{write / one_write:.2f}x" if one_write else "-"
            print(f"{w:>5} {total / mib:>9.1f} {shard / mib:>17.1f} {extra / mib:>17.1f} {extra / shard:>12.2f} "
                  f"{write:>8.3f} {vs:>10} {blocked:>10.4f} {blocked / write:>14.3f} {waited:>13.4f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
