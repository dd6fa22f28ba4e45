#!/usr/bin/env python3
"""Fine-tunes the all-MiniLM-L6-v2 encoder for turnscore's two heads (training only; the engine
never needs Python).

The encoder is trained end to end with two linear heads on its mean-pooled, L2-normalised vector
(the vector turnscore's heads see), with the same loss as `turnscore train-heads`:
  - binary cross-entropy per label; a row whose head is null is masked out of that head's loss;
  - rows weighted by source, w = sqrt(N / (S * n_source)), and chat-corpus rows (source chat_*)
    another --chat-weight times, so that 15k CLINC commands do not drown the chat turns;
  - positives of label l up-weighted by min(sqrt(neg_l / pos_l), 10).
Only train splits are read; dev splits are never seen. The heads trained here are thrown away:
`turnscore train-heads` trains the shipped heads on the int8 model converted from this
checkpoint, and picks thresholds and calibration on the chat dev split.

Writes a Hugging Face checkpoint directory (config.json, model.safetensors, tokenizer files and
the sentence-transformers pooling files copied from the source) that `turnscore convert` reads.
Deterministic for a given seed, torch version and thread count (CPU).

  python3 tools/finetune/finetune.py SRC_DIR OUT_DIR [--epochs 2] [--seed 0]
"""
import argparse
import glob
import json
import math
import os
import random
import shutil
import sys
import time

import torch
from transformers import AutoModel, AutoTokenizer

# One vocabulary for the corpus builder and the fine-tune (shared/data/LABELS.md).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from chat_corpus import SENSITIVE, TOPICS  # noqa: E402


def load_rows(data_dirs, split):
    rows = []
    for d in data_dirs:
        own = os.path.join(d, f"{split}.jsonl")
        files = [own] if os.path.isfile(own) else sorted(glob.glob(os.path.join(d, "*", f"{split}.jsonl")))
        if not files:
            sys.exit(f"no {split}.jsonl in {d} or its sub-folders")
        for f in files:
            with open(f, encoding="utf-8") as fh:
                rows += [json.loads(l) for l in fh if l.strip()]
    return rows


def targets(rows, head, vocab):
    y = torch.zeros(len(rows), len(vocab))
    m = torch.zeros(len(rows))
    for i, r in enumerate(rows):
        if r.get(head) is not None:
            m[i] = 1
            for l in r[head]:
                y[i, vocab.index(l)] = 1
    return y, m


def source_weights(rows, mask, chat_weight):
    counts = {}
    for r, k in zip(rows, mask):
        if k > 0:
            counts[r["source"]] = counts.get(r["source"], 0) + 1
    total, s = sum(counts.values()), len(counts)
    w = torch.zeros(len(rows))
    for i, (r, k) in enumerate(zip(rows, mask)):
        if k > 0:
            w[i] = math.sqrt(total / (s * counts[r["source"]]))
            if r["source"].startswith("chat"):
                w[i] *= chat_weight
    return w


def pos_weights(y, w):
    on = w > 0
    pos = y[on].sum(0)
    neg = on.sum() - pos
    return torch.where(pos > 0, (neg / pos.clamp(min=1)).sqrt().clamp(max=10), torch.ones_like(pos))


def pool(out, attn):
    m = attn.unsqueeze(-1).float()
    v = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(v, dim=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--data", action="append", default=None, help="data dirs (default ../shared/data and data/chat)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--head-lr", type=float, default=2e-3)
    ap.add_argument("--chat-weight", type=float, default=12.0)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--cap", type=int, default=2500, help="rows drawn per source and epoch, at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    data = a.data or ["../shared/data", "data/chat"]

    random.seed(a.seed)
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    tok = AutoTokenizer.from_pretrained(a.src)
    enc = AutoModel.from_pretrained(a.src)
    rows = load_rows(data, "train")
    yt, mt = targets(rows, "topics", TOPICS)
    ys, ms = targets(rows, "sensitive", SENSITIVE)
    wt, ws = source_weights(rows, mt, a.chat_weight), source_weights(rows, ms, a.chat_weight)
    pwt, pws = pos_weights(yt, wt), pos_weights(ys, ws)
    ht = torch.nn.Linear(enc.config.hidden_size, len(TOPICS))
    hs = torch.nn.Linear(enc.config.hidden_size, len(SENSITIVE))
    # The normalised vector has norm 1: a scale lets the heads reach confident logits.
    scale = torch.nn.Parameter(torch.tensor(20.0))
    opt = torch.optim.AdamW(
        [
            {"params": enc.parameters(), "lr": a.lr, "weight_decay": 0.01},
            {"params": list(ht.parameters()) + list(hs.parameters()) + [scale], "lr": a.head_lr, "weight_decay": 0.0},
        ]
    )
    by_source = {}
    for i, r in enumerate(rows):
        by_source.setdefault(r["source"], []).append(i)
    per_epoch = sum(min(len(v), a.cap) for v in by_source.values())
    steps = a.epochs * math.ceil(per_epoch / a.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, (steps - s) / steps)
    )
    ntok = [len(tok(r["text"], truncation=True, max_length=a.max_len)["input_ids"]) for r in rows]
    enc.train()
    step, started = 0, time.time()
    for epoch in range(a.epochs):
        # Each epoch: at most --cap rows per source, drawn afresh; batches of similar length (less
        # padding), in random order.
        pick = []
        for src in sorted(by_source):
            v = by_source[src]
            pick += random.sample(v, min(len(v), a.cap))
        random.shuffle(pick)
        chunks = [sorted(pick[c : c + a.batch * 50], key=lambda i: ntok[i]) for c in range(0, len(pick), a.batch * 50)]
        batches = [ch[b : b + a.batch] for ch in chunks for b in range(0, len(ch), a.batch)]
        random.shuffle(batches)
        for idx in batches:
            batch = tok([rows[i]["text"] for i in idx], padding=True, truncation=True, max_length=a.max_len, return_tensors="pt")
            v = pool(enc(**batch), batch["attention_mask"]) * scale
            loss = 0
            for head, y, w, pw in ((ht, yt, wt, pwt), (hs, ys, ws, pws)):
                z = head(v)
                l = torch.nn.functional.binary_cross_entropy_with_logits(z, y[idx], pos_weight=pw, reduction="none").sum(1)
                loss = loss + (l * w[idx]).sum() / w[idx].sum().clamp(min=1e-6)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0 or step == steps:
                rate = step * a.batch / (time.time() - started)
                eta = max(0, steps - step) * a.batch / rate
                print(f"epoch {epoch + 1}/{a.epochs} step {step}/{steps} loss {loss.item():.4f} ({rate:.0f} rows/s, {eta / 60:.1f} min left)", file=sys.stderr, flush=True)
    os.makedirs(a.out, exist_ok=True)
    enc.save_pretrained(a.out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "modules.json",
                 "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling"):
        s = os.path.join(a.src, name)
        if os.path.isdir(s):
            shutil.copytree(s, os.path.join(a.out, name), dirs_exist_ok=True)
        elif os.path.exists(s):
            shutil.copy(s, os.path.join(a.out, name))
    with open(os.path.join(a.out, "turnscore_finetune.json"), "w") as f:
        json.dump({k: v for k, v in vars(a).items()} | {"data": data, "train_rows": len(rows), "torch": torch.__version__}, f, indent=1)
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
