#!/usr/bin/env python3
"""SIGKILLs at random moments of sharded asynchronous saves, then resumes (issue 14's campaign).

For each PLAN entry RANKS:KILLS it trains a small model under torchrun with RANKS Gloo ranks, fp32,
ZeRO-2 with small gradient buckets and checkpoint.async on, a checkpoint every step, and:
  1. runs it once uninterrupted (the reference);
  2. starts it again in another run directory and, KILLS times, SIGKILLs a victim (rank 0, another
     rank, or every rank at once, each chosen often) at a seeded random moment: most kills wait
     for a shard folder of a save in progress (.step-N.tmp-shards) to appear and then a random
     0-20 ms more, the others come a random 0-200 ms after a new step is logged. torchrun's agent
     then tears the remaining ranks down; the campaign waits for it, checks that no process of the
     run is left, and restarts the same command, which must resume from the newest checkpoint
     that carried COMPLETE when the last process ended;
  3. lets the last start finish and compares its metrics.jsonl (every step logged once, losses
     equal) and its final checkpoint (every weight and Adam moment tensor of every shard) bit for
     bit with the reference.
A start may be killed before it has resumed (its trigger counts the records an earlier start left
in metrics.jsonl): the next start must then resume from the same checkpoint ("in save": start).
For each kill it records the victim, the moment (seconds after the start, steps logged, whether a
shard folder existed), what the checkpoint folder held once every process had ended (newest
complete, temporary folders, step folders without COMPLETE), the checkpoint the next start
resumed from, and which start removed the temporaries. Prints a table, writes --json, exits 1 on
any failure (a resume from anything but the newest complete checkpoint, a process left behind, a
hang, a step-N folder without COMPLETE, a temporary never cleaned, a bit of difference).
  .venv/bin/python scripts/kill_campaign.py                           (after scripts/build.sh)
  .venv/bin/python scripts/kill_campaign.py --plan 2:16 4:6 --seed 7 --json campaign.json
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCHRUN = os.path.join(ROOT, ".venv", "bin", "torchrun")
# How long torchrun's agent and the ranks may take to end after a kill: the survivors get SIGTERM,
# their next collective fails at once (a peer's socket closed) or after train.dist_timeout_s.
EXIT_LIMIT_S = 120


def steps_logged(run):
    try:
        with open(os.path.join(run, "metrics.jsonl")) as f:
            return sum(1 for line in f if line.endswith("\n") and '"loss"' in line)
    except OSError:
        return 0


def folder_state(run):
    """The checkpoint folder: newest complete step folder, step folders without COMPLETE, temporaries."""
    ck = os.path.join(run, "checkpoints")
    names = sorted(os.listdir(ck)) if os.path.isdir(ck) else []
    complete = [n for n in names if n.startswith("step-") and os.path.exists(os.path.join(ck, n, "COMPLETE"))]
    return {
        "newest_complete": complete[-1] if complete else None,
        "torn": [n for n in names if n.startswith("step-") and n not in complete],
        "temporaries": [n for n in names if n.startswith(".step-") or n.startswith(".tmp-step-")],
        "set_aside": [n for n in names if n.startswith("unreadable-")],
    }


def children(pid):
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.split("/")[2]))
    return out


def rank_of(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        return int(env[b"RANK"])
    except (OSError, KeyError, ValueError):
        return None


def processes_of(run):
    """Live processes whose command line names the run directory (none may outlive a start)."""
    out = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                args = f.read().split(b"\0")
            with open(cmdline[:-7] + "stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(run.encode() in a for a in args):
            out.append(int(cmdline.split("/")[2]))
    return out


class Campaign:
    def __init__(self, args, work, corpus, ranks, kills):
        self.args, self.work, self.ranks, self.kills = args, work, ranks, kills
        self.config = os.path.join(work, "run.yaml")
        accum = 6 if 6 % ranks == 0 else 4 * ranks
        with open(self.config, "w") as f:
            f.write(f"""model: {{n_layer: {args.layers}, n_embd: {args.embd}, vocab_size: 256}}
data: {{path: "{corpus}", ctx_len: 16}}
train: {{run_dir: unset, micro_batch: 2, grad_accum: {accum}, epoch_samples: {8 * accum}, epoch_count: 1000,
        max_steps: {args.steps}, device: cpu, threads: 1, dist_timeout_s: 20, seed: 3,
        zero_stage: 2, grad_bucket_mb: 0.01}}
optimizer: {{lr_init: 3.0e-3, warmup_steps: 0}}
checkpoint: {{every_steps: 1, keep: 2, async: true}}
log: {{every_steps: 1}}
""")

    def start(self, run, log):
        cmd = [TORCHRUN, "--standalone", "--no-python", "--nproc-per-node", str(self.ranks), self.args.binary, "train",
               self.config, "--set", f"train.run_dir={run}"]
        out = open(log, "w")
        # A session of its own: whatever is left after a failure goes with one killpg.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                                start_new_session=True)
        out.close()
        return proc

    def finish(self, proc, run):
        """Waits for torchrun; returns (exit code or None when it hung, processes left behind)."""
        try:
            rc = proc.wait(EXIT_LIMIT_S)
        except subprocess.TimeoutExpired:
            rc = None
        left = processes_of(run)
        if rc is None or left:
            os.killpg(proc.pid, signal.SIGKILL)
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
        return rc, left

    def reference(self):
        run = os.path.join(self.work, "whole")
        proc = self.start(run, run + ".log")
        rc, left = self.finish(proc, run)
        if rc != 0 or left:
            sys.exit(f"kill_campaign: the uninterrupted run on {self.ranks} ranks failed (rc {rc}):\n"
                     + open(run + ".log").read())
        return run

    def victims(self, rng, n):
        """n victims: rank 0, each other rank and 'all' in turn, shuffled (every choice comes often)."""
        cycle = [[0]] + [[r] for r in range(1, self.ranks)] + [list(range(self.ranks))]
        out = []
        while len(out) < n:
            block = cycle[:]
            rng.shuffle(block)
            out += block
        return out[:n]

    def kill_once(self, proc, run, victim, rng, start_time):
        """Waits for the moment, SIGKILLs the victim's processes; returns the kill's record (None: the run ended)."""
        aimed = rng.random() < 2 / 3
        # A few steps past the checkpoint this start resumes from (metrics.jsonl may still hold the
        # records of the start before until rank 0 drops those after the resumed step).
        newest = folder_state(run)["newest_complete"]
        after = (int(newest[5:]) if newest else 0) + rng.randint(1, 3)
        pids = {}
        while proc.poll() is None:
            if not pids or len(pids) < self.ranks:
                pids = {rank_of(p): p for p in children(proc.pid)}
                pids.pop(None, None)
            ready = steps_logged(run) >= after and folder_state(run)["newest_complete"] is not None
            if ready and aimed:
                ready = bool(glob.glob(os.path.join(run, "checkpoints", ".step-*.tmp-shards")))
            if ready and len(pids) == self.ranks:
                break
            time.sleep(0.001)
        else:
            return None
        delay = rng.uniform(0, 0.020) if aimed else rng.uniform(0, 0.200)
        time.sleep(delay)
        at = time.monotonic()
        in_save = bool(glob.glob(os.path.join(run, "checkpoints", ".step-*.tmp-shards")))
        logged = steps_logged(run)
        for r in victim:
            try:
                os.kill(pids[r], signal.SIGKILL)
            except ProcessLookupError:
                pass
        rc, left = self.finish(proc, run)
        return {
            "victim": "all" if len(victim) == self.ranks else f"rank {victim[0]}",
            "aimed_at_save": aimed,
            "delay_ms": round(delay * 1000, 1),
            "at_s": round(at - start_time, 2),
            "steps_logged": logged,
            "shard_folder_at_kill": in_save,
            "torchrun_rc": rc,
            "exit_s": round(time.monotonic() - at, 2),
            "left_behind": left,
            "after": folder_state(run),
        }

    def run(self, rng):
        ref = self.reference()
        run = os.path.join(self.work, "killed")
        kills, failures, starts = [], [], 0
        for victim in self.victims(rng, self.kills):
            log = f"{run}.{starts}.log"
            start_time = time.monotonic()
            proc = self.start(run, log)
            starts += 1
            k = self.kill_once(proc, run, victim, rng, start_time)
            resumed = self.check_resume(kills, log)
            if k is None:
                failures.append(f"start {starts}: the run ended before kill {len(kills) + 1} (raise --steps)")
                break
            k["start"] = starts
            # Killed while starting up, before it took a checkpoint: the next start resumes for both.
            k["before_resume"] = bool(kills) and not resumed
            k["log"] = log
            self.note_cleaned(kills, run, starts)
            kills.append(k)
            if k["torchrun_rc"] is None:
                failures.append(f"kill {len(kills)}: torchrun did not end within {EXIT_LIMIT_S} s (hang)")
            if k["left_behind"]:
                failures.append(f"kill {len(kills)}: processes left behind: {k['left_behind']}")
        log = f"{run}.{starts}.log"
        proc = self.start(run, log)
        starts += 1
        rc, left = self.finish(proc, run)
        self.check_resume(kills, log)
        self.note_cleaned(kills, run, starts)
        if rc != 0 or left:
            failures.append(f"the last start failed (rc {rc}, left behind {left}): see {log}")
        final = folder_state(run)
        if final["temporaries"] or final["torn"] or final["set_aside"]:
            failures.append("left in the checkpoint folder at the end: "
                            f"{final['temporaries'] + final['torn'] + final['set_aside']}")
        for i, k in enumerate(kills):
            if k["after"]["torn"]:
                failures.append(f"kill {i + 1}: step folders without COMPLETE: {k['after']['torn']}")
            if k.get("resumed") != k["after"]["newest_complete"]:
                failures.append(f"kill {i + 1}: resumed from {k.get('resumed')}, newest complete was "
                                f"{k['after']['newest_complete']}")
        bad, tensors = compare(ref, run, self.args.steps)
        return kills, starts, final, failures + bad, tensors

    def check_resume(self, kills, log):
        """Which checkpoint the start of `log` resumed from, for the kills not yet resumed after;
        returns whether it had resumed."""
        with open(log, errors="replace") as f:
            m = re.search(r"resumed from (\S+) \(step", f.read())
        if m:
            for k in kills:
                k.setdefault("resumed", os.path.basename(m.group(1)))
        return m is not None

    def note_cleaned(self, kills, run, start):
        """Records, for each kill that left temporaries, the first start after which they were gone."""
        left = set(folder_state(run)["temporaries"])
        for k in kills:
            if k["after"]["temporaries"] and "cleaned_by_start" not in k and not left & set(k["after"]["temporaries"]):
                k["cleaned_by_start"] = start


def metrics(run):
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                out.setdefault(rec["step"], []).append(rec["loss"])
    return out


def compare(ref, run, steps):
    """Bit-exactness of losses and of the final checkpoint's tensors: (failures, tensors compared)."""
    failures = []
    want, got = metrics(ref), metrics(run)
    if sorted(want) != list(range(1, steps + 1)):
        failures.append(f"the reference logged steps {sorted(want)}")
    for step in want:
        if got.get(step) != want[step]:
            failures.append(f"step {step}: loss {got.get(step)} (each record), uninterrupted {want[step]}")
    name = f"step-{steps:08d}"
    a, b = os.path.join(ref, "checkpoints", name), os.path.join(run, "checkpoints", name)
    shards = sorted(n for n in os.listdir(a) if n.endswith(".safetensors"))
    if not os.path.isdir(b) or sorted(n for n in os.listdir(b) if n.endswith(".safetensors")) != shards:
        return failures + [f"{b}: not the reference's shard files {shards}"], 0
    tensors = 0
    for s in shards:
        x, y = load_file(os.path.join(a, s)), load_file(os.path.join(b, s))
        if sorted(x) != sorted(y):
            failures.append(f"{s}: tensors {sorted(y)}, reference {sorted(x)}")
            continue
        for key in x:
            # The generator states are not compared: training draws nothing from them (the
            # sampler and the initialisation have generators of their own), and the CPU one of a
            # multi-rank run already differs between two fresh runs of the same config.
            if key.startswith("rng."):
                continue
            tensors += 1
            if x[key].dtype != y[key].dtype or x[key].shape != y[key].shape or x[key].tobytes() != y[key].tobytes():
                diff = np.abs(x[key].astype(np.float64) - y[key].astype(np.float64)).max()
                failures.append(f"{s} {key}: differs from the reference (max |diff| {diff})")
    return failures, tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", nargs="+", default=["2:16", "4:6"], help="RANKS:KILLS campaigns, one after another")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--steps", type=int, default=0, help="steps per run (default: 4 per kill + 6)")
    ap.add_argument("--json", help="also write every kill's record to this file")
    ap.add_argument("--keep", help="keep the run directories in this folder (default: a temporary one, removed)")
    ap.add_argument("--binary", default=os.path.join(ROOT, os.environ.get("BUILD_DIR", "build"), "bin", "rwkv"))
    args = ap.parse_args()
    plan = []
    for p in args.plan:
        m = re.fullmatch(r"(\d+):(\d+)", p)
        if not m or int(m.group(1)) < 2 or int(m.group(2)) < 1:
            sys.exit(f"kill_campaign: --plan {p}: expected RANKS:KILLS with RANKS >= 2 and KILLS >= 1")
        plan.append((int(m.group(1)), int(m.group(2))))
    work = args.keep or tempfile.mkdtemp(prefix="rwkv-kill-campaign-")
    os.makedirs(work, exist_ok=True)
    rng = random.Random(args.seed)
    report, failed = [], False
    try:
        os.makedirs(os.path.join(work, "text"), exist_ok=True)
        with open(os.path.join(work, "text", "a.txt"), "w") as f:
            for i in range(3000):
                f.write(f"pack my box with {i % 23} dozen liquor jugs; {i % 7}\n")
        subprocess.run([args.binary, "prep", os.path.join(work, "text"), "-o", os.path.join(work, "tok"), "--tokenizer",
                        "byte", "--quiet", "--force"], check=True, stdout=subprocess.DEVNULL)
        for ranks, n in plan:
            steps = args.steps or 4 * n + 6
            sub = os.path.join(work, f"ranks{ranks}")
            shutil.rmtree(sub, ignore_errors=True)
            os.makedirs(sub)
            run_args = argparse.Namespace(**vars(args))
            run_args.steps = steps
            kills, starts, final, failures, tensors = Campaign(run_args, sub, os.path.join(work, "tok"), ranks, n).run(rng)
            print(f"{ranks} ranks, ZeRO-2, async saves every step, {steps} steps: {len(kills)} kills, {starts} starts")
            print(f"{'#':>3} {'victim':>7} {'aimed':>5} {'at s':>6} {'steps':>5} {'in save':>7} {'rc':>4} {'exit s':>6} "
                  f"{'newest complete':>15} {'resumed':>15} {'temporaries left':>24} {'cleaned':>7} {'torn':>15}")
            for i, k in enumerate(kills):
                a = k["after"]
                print(f"{i + 1:>3} {k['victim']:>7} {'yes' if k['aimed_at_save'] else 'no':>5} {k['at_s']:>6.2f} "
                      f"{k['steps_logged']:>5} {'start' if k['before_resume'] else 'yes' if k['shard_folder_at_kill'] else 'no':>7} {str(k['torchrun_rc']):>4} "
                      f"{k['exit_s']:>6.2f} {str(a['newest_complete']):>15} {str(k.get('resumed')):>15} "
                      f"{','.join(a['temporaries']) or '-':>24} {str(k.get('cleaned_by_start', '-')):>7} "
                      f"{','.join(a['torn']) or '-':>15}")
            by = {}
            for k in kills:
                by[k["victim"]] = by.get(k["victim"], 0) + 1
            print(f"kills by victim: {by}; resumed from the newest complete checkpoint: "
                  f"{sum(k.get('resumed') == k['after']['newest_complete'] for k in kills)}/{len(kills)}; "
                  f"set aside at the end: {final['set_aside'] or '-'}")
            print(f"final state vs the uninterrupted run: {steps} losses and {tensors} tensors compared, "
                  + ("bit-identical" if not failures else "FAILED"))
            for f in failures:
                print("  FAILED: " + f)
            failed |= bool(failures)
            report.append({"ranks": ranks, "steps": steps, "starts": starts, "kills": kills, "final": final,
                           "tensors_compared": tensors, "failures": failures})
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
