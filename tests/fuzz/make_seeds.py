"""Writes the seed corpus of tests/fuzz (corpus/<target>/) from the reference writers: torch.save
for the pickles (an OrderedDict as released RWKV .pth files hold, and a plain dict with a view),
the safetensors package for .safetensors, and the binidx layout of RECIPE.md §7 for binidx pairs
in fuzz_binidx's input form (one split byte, the .idx, the .bin). Run with the project venv:
    .venv/bin/python tests/fuzz/make_seeds.py
"""
import collections
import io
import pathlib
import struct
import zipfile

import torch
from safetensors.torch import save_file

corpus = pathlib.Path(__file__).resolve().parent / "corpus"
torch.manual_seed(0)


def data_pkl(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    archive = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    return archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))


def binidx_input(docs, code, fmt):
    width = struct.calcsize("<" + fmt)
    sizes = [len(d) for d in docs]
    pointers = [sum(sizes[:i]) * width for i in range(len(docs))]
    idx = (b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, code, len(docs), len(docs) + 1)
           + struct.pack(f"<{len(docs)}i", *sizes) + struct.pack(f"<{len(docs)}q", *pointers)
           + struct.pack(f"<{len(docs) + 1}q", *range(len(docs) + 1)))
    bin_ = b"".join(struct.pack(f"<{len(d)}{fmt}", *d) for d in docs)
    rest = len(idx) + len(bin_)
    split = next(s for s in range(256) if rest * s // 255 == len(idx))  # fuzz_binidx.cpp's split
    return bytes([split]) + idx + bin_


def main():
    for d in ("unpickler", "safetensors", "binidx"):
        (corpus / d).mkdir(parents=True, exist_ok=True)
    released = collections.OrderedDict()
    released["emb.weight"] = torch.randn(4, 3).bfloat16()
    released["blocks.0.att.time_mix_k"] = torch.rand(1, 1, 3)
    released["blocks.0.att.time_decay"] = torch.randn(3)
    released["head.weight"] = torch.randn(2, 3).half()
    (corpus / "unpickler/ordered_dict_bf16_fp16_fp32.pkl").write_bytes(data_pkl(released))
    with_view = {"a": torch.randn(2, 2), "b": torch.arange(6, dtype=torch.float32)[2:5]}
    (corpus / "unpickler/dict_with_view.pkl").write_bytes(data_pkl(with_view))
    save_file({"emb.weight": torch.randn(4, 3), "head.weight": torch.randn(2, 3).bfloat16(), "x": torch.zeros(0)},
              str(corpus / "safetensors/three_tensors.safetensors"), metadata={"format": "pt"})
    save_file({"w": torch.randn(3).half()}, str(corpus / "safetensors/fp16.safetensors"))
    (corpus / "binidx/u16_three_docs").write_bytes(binidx_input([[1, 2, 3, 0], [7, 8, 0], [50276, 0]], 8, "H"))
    (corpus / "binidx/i32_one_doc").write_bytes(binidx_input([[5, 6, 7, 8, 0]], 4, "i"))


if __name__ == "__main__":
    main()
