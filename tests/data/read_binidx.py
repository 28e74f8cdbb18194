"""Independent reader of Megatron MMIDIDX files, written from the format description (data/README.md "Token files and sample order")
with numpy, as the reference trainer's binidx reader maps them. Prints a JSON summary:
dtype code, sizes, doc_idx and the flat token stream (for small test files only)."""
import json
import struct
import sys

import numpy as np

DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float32,
          7: np.float64, 8: np.uint16}

prefix = sys.argv[1]
with open(prefix + ".idx", "rb") as f:
    assert f.read(9) == b"MMIDIDX\x00\x00", "bad magic"
    (version,) = struct.unpack("<Q", f.read(8))
    assert version == 1
    (code,) = struct.unpack("<B", f.read(1))
    (n,) = struct.unpack("<Q", f.read(8))
    (n_doc,) = struct.unpack("<Q", f.read(8))
    offset = f.tell()
buf = np.memmap(prefix + ".idx", mode="r", order="C")
sizes = np.frombuffer(buf, dtype=np.int32, count=n, offset=offset)
pointers = np.frombuffer(buf, dtype=np.int64, count=n, offset=offset + sizes.nbytes)
doc_idx = np.frombuffer(buf, dtype=np.int64, count=n_doc, offset=offset + sizes.nbytes + pointers.nbytes)
data = np.memmap(prefix + ".bin", mode="r", order="C")
dtype = DTYPES[code]
seqs = [np.frombuffer(data, dtype=dtype, count=int(s), offset=int(p)).tolist()
        for s, p in zip(sizes, pointers)]
print(json.dumps({"code": code, "sizes": sizes.tolist(), "doc_idx": doc_idx.tolist(),
                  "tokens": [t for s in seqs for t in s]}))
