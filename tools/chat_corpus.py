#!/usr/bin/env python3
"""Builds data/chat/{train,dev}.jsonl from the hand-written sources in data/chat/src/*.txt.

Source format (see data/chat/README.md):
  # comment
  ## topics=a,b sensitive=c near=x kind=y     starts a block; a head left out is null
  one turn per line                           takes the block's labels
  [sensitive=c,d] a turn                      overrides some of the block's fields for one line

Every turn gets a stable id from its file group, labels and position, and goes to dev when
sha256(id) mod 3 == 0 (about a third), to train otherwise: split by turn, deterministic.

Checks: labels in the vocabulary, no duplicate turns (case and punctuation ignored), no empty
turn, at most 120 words. Errors name the file and line.

  python3 tools/chat_corpus.py           # writes data/chat/train.jsonl and dev.jsonl
  python3 tools/chat_corpus.py --check   # exits 1 when the committed files differ from the sources
"""
import collections
import hashlib
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "data" / "chat" / "src"
TEST_SRC = ROOT / "data" / "chat" / "test_src"
OUT = ROOT / "data" / "chat"

TOPICS = """arts_culture automotive books_literature business_finance careers education
events_attractions family_parenting fitness_healthy_living food_drink hobbies_interests home_garden
movies_tv music_audio news_current_events outdoors_hiking personal_finance pets pop_culture
real_estate relationships_dating science shopping sports style_fashion technology_computing travel
video_gaming""".split()
SENSITIVE = """health sexual_orientation religion philosophical_beliefs political_views
racial_ethnic_origin trade_union genetic_data biometric_data""".split()

# How a sensitive turn touches its category (optional `form=` on a block or a line).
FORMS = {"explicit", "implicit", "opinion", "question_self", "close_person", "hostility"}

# File group -> (id prefix, source name)
GROUPS = {
    "topics": ("topic", "chat_topics"),
    "sensitive": ("sens", "chat_sensitive"),
    "combined": ("mix", "chat_mixed"),
    "hard_negatives": ("hn", "chat_hard_negatives"),
    "everyday": ("day", "chat_everyday"),
}


def fail(path, line, msg):
    sys.exit(f"{path.relative_to(ROOT)}:{line}: {msg}")


def parse_fields(text, path, line):
    fields = {}
    for part in re.split(r"[;\s]+", text.strip()):
        if not part:
            continue
        if "=" not in part:
            fail(path, line, f"expected key=value, got {part!r}")
        k, v = part.split("=", 1)
        if k in ("topics", "sensitive"):
            labels = [x for x in v.split(",") if x]
            vocab = TOPICS if k == "topics" else SENSITIVE
            for x in labels:
                if x not in vocab:
                    fail(path, line, f"{k} label {x!r} is not in the vocabulary")
            fields[k] = labels
        elif k in ("near", "kind", "form"):
            if k == "form" and v not in FORMS:
                fail(path, line, f"form {v!r} is not one of {sorted(FORMS)}")
            fields[k] = v
        else:
            fail(path, line, f"unknown key {k!r}")
    return fields


def rows(paths, id_prefix="", seen=None):
    seen = {} if seen is None else seen
    counters = collections.Counter()
    out = []
    for path in paths:
        group = path.stem.rsplit("_", 1)[0] if path.stem not in GROUPS else path.stem
        if group not in GROUPS:
            fail(path, 1, f"file group {group!r} is not one of {sorted(GROUPS)}")
        prefix, source = GROUPS[group]
        block = None
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if not line or (line.startswith("#") and not line.startswith("##")):
                continue
            if line.startswith("##"):
                block = parse_fields(line[2:], path, n)
                continue
            if block is None:
                fail(path, n, "a turn before the first ## block header")
            fields = dict(block)
            m = re.match(r"^\[([^\]]*)\]\s*(.*)$", line)
            if m:
                fields.update(parse_fields(m.group(1), path, n))
                line = m.group(2)
            if not line:
                fail(path, n, "empty turn")
            words = len(line.split())
            if words > 120:
                fail(path, n, f"turn has {words} words (at most 120)")
            key = re.sub(r"[^a-z0-9]+", " ", line.lower()).strip()
            if key in seen:
                fail(path, n, f"duplicate of {seen[key]}")
            seen[key] = f"{path.name}:{n}"
            # The id names the block's labels, not the line's overrides, so that adding an
            # override does not renumber the block.
            tag = block.get("near") or block.get("kind") or "-".join(
                (block.get("topics") or []) + (block.get("sensitive") or [])
            )
            counters[(prefix, tag)] += 1
            rid = f"{id_prefix}{prefix}-{tag}-{counters[(prefix, tag)]:02d}"
            row = {
                "id": rid,
                "text": line,
                "topics": fields.get("topics"),
                "sensitive": fields.get("sensitive"),
                "source": source,
            }
            for k in ("near", "kind", "form"):
                if k in fields:
                    row[k] = fields[k]
            out.append(row)
    return out


def split(all_rows):
    train, dev = [], []
    for r in all_rows:
        h = int.from_bytes(hashlib.sha256(r["id"].encode()).digest()[:8], "big")
        (dev if h % 3 == 0 else train).append(r)
    return train, dev


def render(rs):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rs)


def main():
    args = sys.argv[1:]
    if args[:1] == ["--lint"]:
        # Parse the named files (labels, lengths, duplicates among themselves and against every
        # other source file, train and test); writes nothing.
        named = [pathlib.Path(a).resolve() for a in args[1:]]
        others = [p for p in sorted(SRC.glob("*.txt")) + sorted(TEST_SRC.glob("*.txt")) if p not in named]
        seen = {}
        rows(others, seen=seen) if others else None
        got = rows(named, seen=seen)
        c = collections.Counter(l for r in got for h in ("topics", "sensitive") for l in (r[h] or []))
        print(f"lint: {len(got)} turns in {len(named)} file(s), no errors; labels: {dict(c)}")
        return
    seen = {}
    # The test split is parsed first, so that a training turn that repeats a test turn is the
    # one refused (the error names both places).
    test = rows(sorted(TEST_SRC.glob("*.txt")), id_prefix="test-", seen=seen)
    all_rows = rows(sorted(SRC.glob("*.txt")), seen=seen)
    train, dev = split(all_rows)
    files = {OUT / "train.jsonl": render(train), OUT / "dev.jsonl": render(dev)}
    if test:
        files[OUT / "test.jsonl"] = render(test)
    if "--check" in args:
        stale = [p for p, t in files.items() if not p.exists() or p.read_text(encoding="utf-8") != t]
        if stale:
            sys.exit(
                "stale: " + ", ".join(str(p.relative_to(ROOT)) for p in stale)
                + " (run python3 tools/chat_corpus.py)"
            )
        print(f"chat corpus: {len(train)} train + {len(dev)} dev + {len(test)} test rows match data/chat/src and test_src")
        return
    for p, t in files.items():
        p.write_text(t, encoding="utf-8")
    for name, part in (("train+dev", all_rows), ("dev", dev), ("test", test)):
        by = collections.Counter(r["source"] for r in part)
        print(f"chat corpus {name}: {len(part)} rows ({dict(by)})")
    for head, vocab in (("topics", TOPICS), ("sensitive", SENSITIVE)):
        c = collections.Counter(l for r in all_rows for l in (r[head] or []))
        cd = collections.Counter(l for r in dev for l in (r[head] or []))
        ct = collections.Counter(l for r in test for l in (r[head] or []))
        print(f"{head}: " + ", ".join(f"{l} {c[l]} ({cd[l]} dev, {ct[l]} test)" for l in vocab))


if __name__ == "__main__":
    main()
