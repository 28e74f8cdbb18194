"""The peers' side of scripts/bench_peers.sh, measured in the same run as `rwkv bench` at the same
shapes, dtype (fp32, CPU) and thread count, and the report that puts both side by side.

  wkv       transformers' RWKV CPU WKV path (rwkv_linear_attention_cpu), forward and forward+backward
  train     transformers' RwkvForCausalLM training step: forward, cross-entropy, backward,
            clip_grad_norm_(1.0), Adam(0.9, 0.99, eps 1e-8)
  save-hf   a randomly initialised RwkvForCausalLM saved as an HF folder (the shared weights:
            `rwkv export` turns it into the .pth the `rwkv` package reads)
  generate  the `rwkv` package ('cpu fp32'): prefill of a context, then one token at a time
  report    the ratio table (ours / peer, higher is better for us) and one combined JSON

Each figure is the median of the timed runs after warm-up, with min and max, as `rwkv bench` does.
"""
import argparse
import json
import os
import sys
import time


def timing(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    return {"median_ms": ms[len(ms) // 2], "min_ms": ms[0], "max_ms": ms[-1], "runs": runs}


def write(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)


def hf_config(a):
    from transformers import RwkvConfig

    return RwkvConfig(vocab_size=a.V, hidden_size=a.D, num_hidden_layers=a.L, attention_hidden_size=a.D,
                      intermediate_size=4 * a.D, context_length=max(a.ctx, 1024))


def cmd_wkv(a):
    import math

    import torch
    from transformers.models.rwkv.modeling_rwkv import rwkv_linear_attention_cpu

    torch.manual_seed(0)
    td = torch.linspace(-5, 3, a.C).requires_grad_(True)
    tf = torch.full((a.C,), math.log(0.3)).requires_grad_(True)
    k = (torch.randn(a.B, a.T, a.C) * 2).requires_grad_(True)
    v = torch.randn(a.B, a.T, a.C).requires_grad_(True)
    r = torch.randn(a.B, a.T, a.C)

    def fwd():
        with torch.no_grad():
            rwkv_linear_attention_cpu(td, tf, k, v)

    def fwd_bwd():
        for p in (td, tf, k, v):
            p.grad = None
        y, _ = rwkv_linear_attention_cpu(td, tf, k, v)
        (y * r).sum().backward()

    write(a.json, {"peer": "transformers rwkv_linear_attention_cpu", "B": a.B, "T": a.T, "C": a.C,
                   "threads": torch.get_num_threads(),
                   "forward": timing(fwd, a.runs, a.warmup), "forward_backward": timing(fwd_bwd, a.runs, a.warmup)})


def cmd_train(a):
    import torch
    from transformers import RwkvForCausalLM

    torch.manual_seed(0)
    model = RwkvForCausalLM(hf_config(a)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.9, 0.99), eps=1e-8)
    batch = torch.randint(a.V, (a.micro_batch, a.ctx + 1))
    inputs, targets = batch[:, :-1], batch[:, 1:]

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, a.V).float(), targets.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t = timing(step, a.steps, a.warmup)
    tokens = a.micro_batch * a.ctx
    write(a.json, {"peer": "transformers RwkvForCausalLM", "n_layer": a.L, "n_embd": a.D, "vocab_size": a.V,
                   "micro_batch": a.micro_batch, "ctx": a.ctx, "threads": torch.get_num_threads(), "step": t,
                   "tokens_per_s": tokens / (t["median_ms"] * 1e-3)})


def cmd_save_hf(a):
    import torch
    from transformers import RwkvForCausalLM

    torch.manual_seed(0)
    RwkvForCausalLM(hf_config(a)).save_pretrained(a.out, safe_serialization=True)


def cmd_generate(a):
    os.environ.setdefault("RWKV_JIT_ON", "1")
    os.environ["RWKV_CUDA_ON"] = "0"
    import torch
    from rwkv.model import RWKV

    model = RWKV(model=a.pth, strategy="cpu fp32", verbose=False)
    g = torch.Generator().manual_seed(0)
    rows = []
    for ctx in a.ctx:
        state = None
        t0 = time.perf_counter()
        for done in range(0, ctx, a.chunk):
            n = min(a.chunk, ctx - done)
            _, state = model.forward(torch.randint(a.V, (n,), generator=g).tolist(), state)
        prefill_s = time.perf_counter() - t0
        token = [int(torch.randint(a.V, (1,), generator=g))]

        def one_token():
            nonlocal state, token
            out, state = model.forward(token, state)
            token = [int(out.argmax())]

        t = timing(one_token, a.tokens, a.warmup)
        rows.append({"ctx": ctx, "prefill_tokens_per_s": ctx / prefill_s if ctx else 0, "token": t,
                     "tokens_per_s": 1e3 / t["median_ms"]})
    write(a.json, {"peer": "rwkv package (cpu fp32)", "threads": torch.get_num_threads(), "chunk": a.chunk,
                   "contexts": rows})


def cmd_report(a):
    def load(path):
        with open(path) as f:
            return json.load(f)

    ours_wkv, peer_wkv = load(a.ours_wkv), load(a.peer_wkv)
    ours_train, peer_train = load(a.ours_train), load(a.peer_train)
    ours_gen, peer_gen = load(a.ours_generate), load(a.peer_generate)
    rows = []  # (what, ours, peer, unit, ratio ours/peer as a speed-up)

    def add(what, ours, peer, unit, higher_is_better):
        ratio = ours / peer if higher_is_better else peer / ours
        rows.append({"what": what, "ours": ours, "peer": peer, "unit": unit, "speedup": ratio})

    shape = f"B={ours_wkv['B']} T={ours_wkv['T']} C={ours_wkv['C']}"
    for mode, label in (("forward", "fwd"), ("forward_backward", "fwd+bwd")):
        add(f"WKV {label} {shape}: ours vs transformers CPU path", ours_wkv[mode]["op"]["median_ms"],
            peer_wkv[mode]["median_ms"], "ms", False)
        add(f"WKV {label} {shape}: ours vs ATen per-step loop", ours_wkv[mode]["op"]["median_ms"],
            ours_wkv[mode]["aten_loop"]["median_ms"], "ms", False)
    tshape = (f"L={ours_train['n_layer']} D={ours_train['n_embd']} V={ours_train['vocab_size']} "
              f"B={ours_train['micro_batch']} T={ours_train['ctx']}")
    add(f"train step {tshape}: ours vs transformers RwkvForCausalLM", ours_train["tokens_per_s"],
        peer_train["tokens_per_s"], "tokens/s", True)
    peer_by_ctx = {r["ctx"]: r for r in peer_gen["contexts"]}
    for r in ours_gen["contexts"]:
        p = peer_by_ctx.get(r["ctx"])
        if p is None:
            continue
        add(f"generate after ctx {r['ctx']}: ours vs rwkv package cpu fp32", r["tokens_per_s"], p["tokens_per_s"],
            "tokens/s", True)
        if r["ctx"] > 0:
            add(f"prefill of ctx {r['ctx']}: ours vs rwkv package cpu fp32", r["prefill_tokens_per_s"],
                p["prefill_tokens_per_s"], "tokens/s", True)

    print(f"\npeers, same run, {ours_train['threads']} threads, fp32 CPU (speed-up > 1: ours faster)")
    print(f"  {'':<78} {'ours':>10} {'peer':>10} {'unit':>9} {'speed-up':>9}")
    for r in rows:
        print(f"  {r['what']:<78} {r['ours']:>10.4g} {r['peer']:>10.4g} {r['unit']:>9} {r['speedup']:>8.2f}x")
    print(f"\nown targets: WKV share of the step {100 * ours_train['wkv_share']:.1f}% (target < 5%), "
          f"step at {100 * ours_train['mfu_vs_gemm']:.1f}% of its GEMMs' rate (target >= 70%), "
          f"{ours_train['achieved_tflops'] * 1e3:.1f} GFLOP/s achieved")
    write(a.out, {"rows": rows, "ours": {"wkv": ours_wkv, "train": ours_train, "generate": ours_gen},
                  "peers": {"wkv": peer_wkv, "train": peer_train, "generate": peer_gen}})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wkv")
    for n, d in (("--B", 8), ("--T", 1024), ("--C", 768), ("--runs", 5), ("--warmup", 1)):
        w.add_argument(n, type=int, default=d)
    w.add_argument("--json", required=True)
    for name in ("train", "save-hf"):
        t = sub.add_parser(name)
        for n, d in (("--L", 12), ("--D", 768), ("--V", 50277), ("--micro-batch", 1), ("--ctx", 256),
                     ("--steps", 3), ("--warmup", 1)):
            t.add_argument(n, type=int, default=d)
        t.add_argument("--json" if name == "train" else "--out", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--pth", required=True)
    g.add_argument("--V", type=int, required=True)
    g.add_argument("--ctx", type=lambda s: [int(x) for x in s.split(",")], default=[1024])
    for n, d in (("--tokens", 32), ("--warmup", 2), ("--chunk", 1024)):
        g.add_argument(n, type=int, default=d)
    g.add_argument("--json", required=True)
    r = sub.add_parser("report")
    for n in ("--ours-wkv", "--peer-wkv", "--ours-train", "--peer-train", "--ours-generate", "--peer-generate",
              "--out"):
        r.add_argument(n, required=True)
    a = p.parse_args()
    if a.threads > 0:
        import torch

        torch.set_num_threads(a.threads)
    {"wkv": cmd_wkv, "train": cmd_train, "save-hf": cmd_save_hf, "generate": cmd_generate,
     "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
