#!/usr/bin/env python3
"""The Python module and the Spark example against the CLI, on the same rows, in one run.

1. Builds a Parquet dataset of N turns (default 10,000; 4 files) from the benchmark corpus, with
   rows the policy suppresses and rows that must be rejected (null or empty text).
2. Scores it with the CLI (`turnscore score in/ -o cli.parquet --threads T`), with the Python
   module (`Engine(threads=T).score(table)`), and with Spark in local[T] mode through
   `mapInArrow` (T tasks of 1 thread), timing each; then runs `examples/spark_score.py`
   unchanged as a user would, and `examples/ray_score.py` when Ray is installed.
3. Checks that every input row is accounted for (one output row per input id, reasons add up)
   and that the module's and Spark's scores equal the CLI's bit for bit.
4. Prints rows/s of each and the ratios against the CLI.

Needs: the turnscore wheel, pyspark, Java 17+. Exit status 1 on any mismatch.
Usage: python3 tools/python/spark_check.py --turnscore target/release/turnscore [--rows 10000] [--threads 2]
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

import turnscore

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_input(n, out_dir):
    texts = [json.loads(l)["text"] for l in open(ROOT / "benches/data/corpus-1000.jsonl") if l.strip()]
    cols = {k: [] for k in ["id", "text", "role", "region", "consent_ads", "is_minor", "account_linked", "conversation_id", "turn"]}
    for i in range(n):
        t = texts[i % len(texts)]
        if i % 197 == 3:
            t = None  # rejected: missing_text
        elif i % 211 == 5:
            t = "   "  # rejected: empty_text
        cols["id"].append(f"r{i:06d}")
        cols["text"].append(t)
        cols["role"].append("assistant" if i % 53 == 0 else "user")
        cols["region"].append("FR" if i % 31 == 0 else "US")
        cols["consent_ads"].append(i % 41 != 0)
        cols["is_minor"].append(False)
        cols["account_linked"].append(True)
        cols["conversation_id"].append(f"c{i // 4}")
        cols["turn"].append(i % 4)
    table = pa.table(cols)
    out_dir.mkdir(parents=True)
    parts = 4
    step = (n + parts - 1) // parts
    for p in range(parts):
        pq.write_table(table.slice(p * step, step), out_dir / f"part-{p}.parquet")
    return table


def canon(t):
    """Sorted by id; the columns compared, as Python values (floats as their bit patterns)."""
    t = t.sort_by("id")
    out = {}
    for name in t.column_names:
        col = t.column(name).combine_chunks()
        if pa.types.is_struct(col.type):
            for i in range(col.type.num_fields):
                f = col.field(i)
                # float32 widened to a Python float exactly; hex keeps every bit visible
                out[f"{name}.{col.type.field(i).name}"] = [None if v is None else float.hex(v) for v in f.to_pylist()]
        elif pa.types.is_dictionary(col.type):
            out[name] = col.cast(pa.string()).to_pylist()
        elif pa.types.is_integer(col.type):
            out[name] = [None if v is None else int(v) for v in col.to_pylist()]
        else:
            out[name] = col.to_pylist()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turnscore", default=str(ROOT / "target/release/turnscore"))
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="turnscore-spark-"))
    ok = True
    try:
        table = build_input(a.rows, tmp / "in")
        n = table.num_rows

        t0 = time.perf_counter()
        r = subprocess.run([a.turnscore, "score", str(tmp / "in" / "*.parquet"), "-o", str(tmp / "cli.parquet"), "--threads", str(a.threads), "--quiet"],
                           capture_output=True, text=True)
        cli_s = time.perf_counter() - t0
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        cli = pq.read_table(tmp / "cli.parquet")

        eng = turnscore.Engine(threads=a.threads)
        inp = pq.read_table(tmp / "in")
        # Limits as in the CLI: a thread count over the cap is refused at once, and a text over
        # 100,000 bytes is rejected as too_long by default.
        t0 = time.time()
        try:
            turnscore.Engine(threads=100000)
            print("FAIL: Engine(threads=100000) was accepted", file=sys.stderr)
            return 1
        except Exception as e:
            if "256" not in str(e) or time.time() - t0 > 10:
                print(f"FAIL: threads=100000: {e!r} after {time.time() - t0:.1f}s", file=sys.stderr)
                return 1
        big = pa.table({"id": ["big"], "text": ["a" * 1_500_000]})
        reason = eng.score(big).column("reason").to_pylist()[0]
        if reason != "rejected:too_long":
            print(f"FAIL: a 1.5 MB text got {reason!r}, not rejected:too_long", file=sys.stderr)
            return 1
        # Forked workers (Spark's Python daemon forks them): an engine made here, used in a
        # child process after fork, must work and give the same scores.
        small = inp.slice(0, 64)
        want_small = eng.score(small)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            try:
                same = eng.score(small).equals(want_small)
                os.write(wfd, b"1" if same else b"0")
            finally:
                os._exit(0)
        os.close(wfd)
        got_fork = os.read(rfd, 1)
        os.waitpid(pid, 0)
        if got_fork != b"1":
            print("FAIL fork: an engine used in a forked child gave other scores or failed")
            ok = False
        else:
            print("ok   fork: an engine made before a fork scores identically in the child")
        t0 = time.perf_counter()
        mod = eng.score(inp)
        mod_s = time.perf_counter() - t0

        from pyspark.sql import SparkSession
        spark = (SparkSession.builder.master(f"local[{a.threads}]").appName("turnscore-check")
                 .config("spark.sql.execution.arrow.maxRecordsPerBatch", "4096")
                 .config("spark.ui.enabled", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        ddl = eng.spark_ddl()

        def score(batches):
            e = _worker_engine()
            for b in batches:
                yield e.score(b, spark=True)

        df = spark.read.parquet(str(tmp / "in"))
        parts = df.rdd.getNumPartitions()
        t0 = time.perf_counter()
        df.mapInArrow(score, ddl).write.mode("overwrite").parquet(str(tmp / "spark_inproc"))
        spark_s = time.perf_counter() - t0
        spark.stop()

        # The example, unchanged, as a user runs it.
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, str(ROOT / "examples/spark_score.py"), str(tmp / "in"), str(tmp / "spark_out"),
                            "--master", f"local[{a.threads}]"], capture_output=True, text=True)
        example_s = time.perf_counter() - t0
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            return 1
        spark_out = pq.read_table(tmp / "spark_out")

        # Ray Data, when installed: examples/ray_score.py unchanged.
        ray_out, ray_s = None, None
        try:
            import ray  # noqa: F401
        except ImportError:
            print("skipped Ray: `import ray` fails (pip install 'ray[data]')")
        else:
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, str(ROOT / "examples/ray_score.py"), str(tmp / "in"), str(tmp / "ray_out"),
                                "--concurrency", str(a.threads), "--threads", "1"], capture_output=True, text=True)
            ray_s = time.perf_counter() - t0
            if r.returncode != 0:
                print(r.stderr[-3000:], file=sys.stderr)
                return 1
            ray_out = pq.read_table(tmp / "ray_out")

        want = canon(cli)
        ids = sorted(table.column("id").to_pylist())
        runs = [("module", mod), ("spark (in process)", pq.read_table(tmp / "spark_inproc")), ("examples/spark_score.py", spark_out)]
        if ray_out is not None:
            runs.append(("examples/ray_score.py", ray_out))
        for name, got_t in runs:
            got = canon(got_t)
            if got_t.num_rows != n or got["id"] != ids:
                print(f"FAIL {name}: {got_t.num_rows} output rows for {n} input rows, or ids differ")
                ok = False
                continue
            bad = [k for k in want if got.get(k) != want[k]]
            if bad:
                print(f"FAIL {name}: columns differ from the CLI's: {bad[:5]}")
                ok = False
            else:
                print(f"ok   {name}: {n} rows, every column equal to the CLI's bit for bit ({len(want)} columns incl. every label score)")
        reasons = {}
        for r_ in want["reason"]:
            reasons[r_] = reasons.get(r_, 0) + 1
        print("reasons:", json.dumps(reasons, sort_keys=True), "sum", sum(reasons.values()))
        rate = lambda s: n / s
        print(f"throughput, {n} rows, {a.threads} threads ({parts} Spark partitions):")
        print(f"  CLI `turnscore score` (Parquet in and out, process start included): {rate(cli_s):8.1f} rows/s")
        print(f"  Python module Engine.score(table):                                  {rate(mod_s):8.1f} rows/s  ratio {cli_s / mod_s:.3f}")
        print(f"  Spark local[{a.threads}] mapInArrow + Parquet write (job only):           {rate(spark_s):8.1f} rows/s  ratio {cli_s / spark_s:.3f}")
        print(f"  examples/spark_score.py end to end (JVM start included):           {rate(example_s):8.1f} rows/s  ratio {cli_s / example_s:.3f}")
        if ray_s is not None:
            print(f"  examples/ray_score.py end to end (Ray start included):             {rate(ray_s):8.1f} rows/s  ratio {cli_s / ray_s:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


_W = None


def _worker_engine():
    global _W
    if _W is None:
        _W = turnscore.Engine(threads=1)
    return _W


if __name__ == "__main__":
    sys.exit(main())
