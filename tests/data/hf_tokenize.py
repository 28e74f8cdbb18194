"""Reference encodings from the Hugging Face `tokenizers` package, for the C++ parity tests.

  hf_tokenize.py encode TOKENIZER_JSON CASES_JSON   -> JSON list of id lists
  hf_tokenize.py replace CASES_JSON                 -> the cases decoded with errors="replace", base64
  hf_tokenize.py train OUT_JSON CORPUS_TXT VOCAB    -> trains a small byte-level BPE
  hf_tokenize.py bench TOKENIZER_JSON CORPUS_TXT    -> JSON {"tokens", "seconds"} (one thread)

CASES_JSON is a list of base64 strings (the raw bytes of each case). `tokenizers` only accepts
valid text, so the bytes are decoded with errors="replace" (each maximal ill-formed subpart
becomes U+FFFD) -- the behaviour the C++ tokenizer documents for invalid UTF-8.
"""
import base64
import json
import sys
import time

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

mode = sys.argv[1]
if mode == "encode":
    tok = Tokenizer.from_file(sys.argv[2])
    cases = [base64.b64decode(c).decode("utf-8", errors="replace") for c in json.load(open(sys.argv[3]))]
    print(json.dumps([tok.encode(c).ids for c in cases]))
elif mode == "replace":
    cases = [base64.b64decode(c) for c in json.load(open(sys.argv[2]))]
    print(json.dumps([base64.b64encode(c.decode("utf-8", errors="replace").encode()).decode() for c in cases]))
elif mode == "train":
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[4]), special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([sys.argv[3]], trainer)
    tok.save(sys.argv[2])
elif mode == "bench":
    tok = Tokenizer.from_file(sys.argv[2])
    lines = open(sys.argv[3], encoding="utf-8").read().split("\n")
    t0 = time.perf_counter()
    n = sum(len(tok.encode(line).ids) for line in lines)
    print(json.dumps({"tokens": n, "seconds": time.perf_counter() - t0}))
else:
    sys.exit(f"unknown mode {mode}")
