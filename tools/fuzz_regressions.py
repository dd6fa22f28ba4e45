#!/usr/bin/env python3
"""Writes fuzz/regressions/model_open/*.bin and fuzz/seeds/*: one model file per crash class that
fuzzers found in other model loaders, each with every checksum right so that the semantic
validation (not a CRC) must refuse it, plus small seed inputs for each fuzz target.

  python3 tools/fuzz_regressions.py BASE.tsm     # BASE: a model converted from tests/data/tiny-bert-cls

The classes (from published OSS-Fuzz and CVE reports on GGUF, safetensors and ollama loaders):
zero-length key, zero dimension (a division by zero), an unknown element type, metadata that
asks for a huge allocation, a shape product that overflows, data offsets outside the file.
`cargo test` replays every file (tests/fuzz_regressions.rs) and the fuzz targets start from them.
Plain Python 3, no packages.
"""
import copy
import json
import pathlib
import struct
import sys
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER_LEN, ALIGN, MAGIC, VERSION = 64, 64, b"TRNSCORE", None


def parse(b):
    global VERSION
    VERSION = struct.unpack("<I", b[8:12])[0]
    mo, ml, do = struct.unpack("<QQQ", b[24:48])
    return json.loads(b[mo:mo + ml]), b[do:]


def frame(meta, data, fix_crcs=True):
    meta = copy.deepcopy(meta)
    if fix_crcs:
        for t in meta.get("tensors", []):
            o, l = t.get("offset"), t.get("len")
            if isinstance(o, int) and isinstance(l, int) and 0 <= o and o + l <= len(data):
                t["crc32"] = zlib.crc32(data[o:o + l])
        tk = meta["tokenizer"]
        if tk["offset"] + tk["len"] <= len(data):
            tk["crc32"] = zlib.crc32(data[tk["offset"]:tk["offset"] + tk["len"]])
    mb = json.dumps(meta, separators=(",", ":")).encode()
    do = -(-(HEADER_LEN + len(mb)) // ALIGN) * ALIGN
    h = MAGIC + struct.pack("<IIQQQQQI", VERSION, HEADER_LEN, do + len(data), HEADER_LEN, len(mb),
                            do, len(data), zlib.crc32(mb))
    h += struct.pack("<I", zlib.crc32(h))
    return h + mb + b"\0" * (do - HEADER_LEN - len(mb)) + data


def main():
    meta, data = parse(pathlib.Path(sys.argv[1]).read_bytes())
    # A small base: no tensors, an empty tokenizer blob, no data. Each case adds what it needs.
    empty = copy.deepcopy(meta)
    empty["tensors"] = []
    empty["tokenizer"] = {"offset": 0, "len": 0, "crc32": 0, "sha256": ""}
    empty["topics"] = None
    empty["sensitive"] = None
    small = bytes(range(256)) * 4  # 1 KiB data region

    def t(name, dtype, shape, offset=0, length=None):
        n = 4 if dtype == "f32" else 1
        for d in shape:
            n *= d
        return {"name": name, "dtype": dtype, "shape": shape, "offset": offset,
                "len": n if length is None else length, "crc32": 0}

    cases = {}
    m = copy.deepcopy(empty); m["tensors"] = [t("", "f32", [4])]
    cases["zero_length_key"] = (m, small[:16])
    m = copy.deepcopy(empty); m["tensors"] = [t("embeddings.word_embeddings.weight", "f32", [0, 32])]
    cases["zero_dimension_tensor"] = (m, b"")
    m = copy.deepcopy(empty); m["architecture"]["num_heads"] = 0
    cases["zero_heads_division"] = (m, b"")
    m = copy.deepcopy(empty); m["architecture"]["hidden_size"] = 0; m["architecture"]["num_heads"] = 0
    cases["zero_hidden_size"] = (m, b"")
    m = copy.deepcopy(empty); m["tensors"] = [t("embeddings.LayerNorm.weight", "q4_k", [4])]
    cases["unknown_element_type"] = (m, small[:16])
    m = copy.deepcopy(empty)
    m["architecture"].update(vocab_size=2, hidden_size=4, num_heads=1, intermediate_size=4)
    m["tensors"] = [t("embeddings.word_embeddings.weight", "i32", [2, 4])]
    m["tensors"][0]["len"] = 32
    cases["wrong_element_type_for_a_weight"] = (m, small[:32])
    m = copy.deepcopy(empty); m["architecture"]["vocab_size"] = 1 << 40
    m["architecture"]["max_position_embeddings"] = 1 << 40
    cases["huge_allocation_from_metadata"] = (m, b"")
    m = copy.deepcopy(empty); m["tensors"] = [t("x", "f32", [1 << 62, 1 << 62], length=16)]
    cases["shape_product_overflow"] = (m, small[:16])
    m = copy.deepcopy(empty); m["tensors"] = [t("x", "f32", [4], offset=(1 << 64) - 8)]
    cases["data_offset_overflow"] = (m, small[:16])
    m = copy.deepcopy(empty); m["tensors"] = [t("x", "f32", [4], offset=1 << 20)]
    cases["data_offset_outside_the_file"] = (m, small)
    m = copy.deepcopy(empty); m["tokenizer"] = {"offset": 0, "len": 1 << 40, "crc32": 0, "sha256": ""}
    cases["tokenizer_blob_outside_the_file"] = (m, small)

    out = ROOT / "fuzz" / "regressions" / "model_open"
    out.mkdir(parents=True, exist_ok=True)
    for name, (m, d) in cases.items():
        # Mode byte 1: the rest is a whole file (see fuzz/fuzz_targets/model_open.rs).
        (out / f"{name}.bin").write_bytes(b"\x01" + frame(m, d))
    seeds = ROOT / "fuzz" / "seeds"
    for d in ("model_open", "jsonl_row", "parquet_rows", "arrow_rows", "policy_json", "tokenize_windows"):
        (seeds / d).mkdir(parents=True, exist_ok=True)
    # Mode byte 0: metadata JSON, a zero byte, the data region (the target fixes the checksums).
    (seeds / "model_open" / "empty_model").write_bytes(b"\x00" + json.dumps(empty).encode() + b"\x00")
    one = copy.deepcopy(empty); one["tensors"] = [t("embeddings.LayerNorm.weight", "f32", [32], 0)]
    (seeds / "model_open" / "one_tensor").write_bytes(b"\x00" + json.dumps(one).encode() + b"\x00" + small[:128])
    (seeds / "model_open" / "whole_file").write_bytes(b"\x01" + frame(empty, b""))
    rows = (ROOT / "examples" / "turns.jsonl").read_bytes()
    (seeds / "jsonl_row" / "examples").write_bytes(rows)
    (seeds / "jsonl_row" / "odd").write_bytes(
        b'\xef\xbb\xbf{"id":1,"text":"a","region":"DE","region":"US"}\n\n{"id":"x","text":5}\r\n[1]\n'
        b'{"id":"u","text":"caf\xff"}\n{"id":"t","text":"b","turn":18446744073709551615}\n')
    (seeds / "policy_json" / "default").write_bytes((ROOT / "docs" / "policy.default.json").read_bytes()
                                                     if (ROOT / "docs" / "policy.default.json").exists()
                                                     else b'{"version":"v","excluded_regions":["DE"],"require_consent":true,"exclude_minors":true,"require_account_linked":true,"ad_roles":["user"]}')
    (seeds / "tokenize_windows" / "text").write_bytes(
        "my doctor says I have type 2 diabetes, what should I eat? caf\u00e9 \u6771\u4eac \U0001F600 ".encode() * 8)
    print(f"wrote {len(cases)} regression files to {out.relative_to(ROOT)} and seeds to {seeds.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
