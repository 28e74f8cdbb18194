"""Independent Python side of the [export] tests: reads and writes weight files with the real
clients (torch, safetensors, transformers, the `rwkv` package) and reports what they see as JSON.

Tensor values travel as bit patterns (int16 for 16-bit types, int32 for fp32) so the C++ side can
compare bit-exactly without trusting any of our own readers.
"""
import argparse
import collections
import json
import os
import sys

import torch

BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}
NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def describe(tensors):
    out = []
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise SystemExit(f"entry {name!r} is a {type(t).__name__}, not a tensor")
        out.append({
            "name": name,
            "dtype": NAMES[t.dtype],
            "shape": list(t.shape),
            "contiguous": t.is_contiguous(),
            "bits": t.contiguous().view(BITS[t.dtype]).flatten().tolist(),
        })
    return out


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f)


def dump_pth(args):
    d = torch.load(args.file, weights_only=True, map_location="cpu")
    write_json(args.out, {"type": type(d).__module__ + "." + type(d).__qualname__, "tensors": describe(d)})


def dump_safetensors(args):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(args.file, framework="pt") as f:
        metadata = f.metadata()
    d = load_file(args.file)
    write_json(args.out, {"metadata": metadata, "tensors": describe(d)})


def sample_tensors():
    """Released-checkpoint-like content: bf16 with (1,1,D) time_mix, plus fp16/fp32, a view into a
    shared storage with an offset and a transposed (non-contiguous) tensor."""
    g = torch.Generator().manual_seed(7)
    base = torch.randn(6, 5, generator=g)
    return collections.OrderedDict([
        ("emb.weight", torch.randn(11, 8, generator=g).bfloat16()),
        ("blocks.0.att.time_mix_k", torch.rand(1, 1, 8, generator=g).bfloat16()),
        ("blocks.0.att.time_decay", (torch.randn(8, generator=g) * 3).bfloat16()),
        ("half", torch.randn(3, 4, generator=g).half()),
        ("single", torch.randn(7, generator=g) * 1e30),
        ("view_with_offset", base[2:4]),
        ("transposed", base.t()),
        ("scalar", torch.tensor(2.5)),
        ("empty", torch.zeros(0, 3)),
    ])


def save_pth(args):
    d = sample_tensors()
    if args.kind == "state_dict":
        # A module's state_dict: an OrderedDict carrying a _metadata attribute (pickled with BUILD).
        m = torch.nn.Module()
        for i, (name, t) in enumerate(d.items()):
            m.register_buffer(f"b{i}", t)
        d = m.state_dict()
    elif args.kind == "dict":
        d = dict(d)
    torch.save(d, args.file, pickle_protocol=args.protocol)
    write_json(args.out, {"tensors": describe(d)})


def save_safetensors(args):
    from safetensors.torch import save_file

    d = {k: v.contiguous() for k, v in sample_tensors().items() if k not in ("view_with_offset", "transposed")}
    save_file(d, args.file, metadata={"format": "pt"})
    write_json(args.out, {"tensors": describe(d)})


def resave_released(args):
    """Re-saves a .pth the way released RWKV-4 checkpoints are: bf16 values in an OrderedDict."""
    d = torch.load(args.file, weights_only=True, map_location="cpu")
    torch.save(collections.OrderedDict((k, v.bfloat16()) for k, v in d.items()), args.out)


def tokens(text):
    return [int(x) for x in text.split(",")]


def logits_hf(args):
    from transformers import RwkvForCausalLM

    model, info = RwkvForCausalLM.from_pretrained(
        args.folder, local_files_only=True, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:  # from_pretrained only warns, and would run on randomly initialised weights
        raise SystemExit(f"transformers did not load every weight: {problems}")
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([tokens(args.tokens)])).logits[0]
    write_json(args.out, {"logits": out.double().tolist(), "rescale_every": model.config.rescale_every})


def logits_rwkv(args):
    os.environ["RWKV_JIT_ON"] = "0"
    os.environ["RWKV_CUDA_ON"] = "0"
    from rwkv.model import RWKV

    model = RWKV(model=args.file, strategy="cpu fp32", verbose=False)
    rows, state = [], None
    for tok in tokens(args.tokens):  # RNN mode, one token at a time: logits for every position
        out, state = model.forward([tok], state)
        rows.append(out.double().tolist())
    write_json(args.out, {"logits": rows})


def parity(args):
    """For each case (HF folder, .pth of the same weights): transformers' logits and the `rwkv`
    package's logits on --tokens, and transformers' gradients (CPU path, autograd through its own
    WKV loop) of the mean next-token cross-entropy on the --grad-tokens batch (no L2Wrap)."""
    from transformers import RwkvForCausalLM

    batch = torch.tensor([tokens(row) for row in args.grad_tokens.split(";")])
    out = {}
    for name, folder, pth in args.case:
        ns = argparse.Namespace(folder=folder, file=pth, tokens=args.tokens, out=None)
        result = {}
        for key, fn in (("hf_logits", logits_hf), ("rwkv_logits", logits_rwkv)):
            ns.out = args.out + f".{name}.{key}"
            fn(ns)
            with open(ns.out) as f:
                result[key] = json.load(f)["logits"]
            os.remove(ns.out)
        model = RwkvForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
        model.train()  # rescale_every is 0, so train mode changes nothing but enables autograd use
        logits = model(batch[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        loss.backward()
        result["loss"] = loss.item()
        result["grads"] = {k: p.grad.double().flatten().tolist() for k, p in model.named_parameters()}
        out[name] = result
    write_json(args.out, out)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(required=True)
    for name, fn, extra in [
        ("dump-pth", dump_pth, []), ("dump-safetensors", dump_safetensors, []),
        ("save-pth", save_pth, ["kind", "protocol"]), ("save-safetensors", save_safetensors, []),
        ("logits-rwkv", logits_rwkv, ["tokens"]), ("resave-released", resave_released, []),
    ]:
        s = sub.add_parser(name)
        s.add_argument("file")
        s.add_argument("out")
        if "kind" in extra:
            s.add_argument("--kind", choices=["ordered", "state_dict", "dict"], default="ordered")
        if "protocol" in extra:
            s.add_argument("--protocol", type=int, default=2)
        if "tokens" in extra:
            s.add_argument("--tokens", required=True)
        s.set_defaults(fn=fn)
    s = sub.add_parser("logits-hf")
    s.add_argument("folder")
    s.add_argument("out")
    s.add_argument("--tokens", required=True)
    s.set_defaults(fn=logits_hf)
    s = sub.add_parser("parity")
    s.add_argument("out")
    s.add_argument("--case", nargs=3, action="append", required=True, metavar=("NAME", "HF_FOLDER", "PTH"))
    s.add_argument("--tokens", required=True)
    s.add_argument("--grad-tokens", required=True, help="rows of comma-separated ids, separated by ';'")
    s.set_defaults(fn=parity)
    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
