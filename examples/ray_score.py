#!/usr/bin/env python3
"""Score a Parquet dataset of chat turns with Ray Data: `map_batches` with a callable class.

Each actor opens one engine (the model file is memory-mapped, so all actors of a node share it
through the page cache) and scores pyarrow batches; one output row per input row, in order within
each batch, with the engine's output schema; the result is written as Parquet.

    pip install "ray[data]" turnscore-*.whl
    python3 examples/ray_score.py turns.parquet scored/ --concurrency 2 --threads 1

`--concurrency` actors × `--threads` engine threads should not exceed the cores Ray may use.
"""
import argparse

import ray

import turnscore


class Scorer:
    """One engine per actor, made once when the actor starts."""

    def __init__(self, model=None, threads=1, policy=None, text_col="text", id_col="id"):
        self.engine = turnscore.Engine(model=model, threads=threads, policy=policy)
        self.text_col, self.id_col = text_col, id_col

    def __call__(self, batch):
        # batch_format="pyarrow": a pyarrow.Table in, a pyarrow.Table out. Spark-compatible
        # types (string reason, int64 counts) keep Ray's Parquet writer and pandas users happy.
        return self.engine.score(batch, text_col=self.text_col, id_col=self.id_col, spark=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="Parquet file or directory of turns")
    ap.add_argument("output", help="output directory (Parquet)")
    ap.add_argument("--model", default=None, help="model file (default: the bundled model)")
    ap.add_argument("--policy", default=None, help="policy JSON file (default: the built-in strict policy)")
    ap.add_argument("--threads", type=int, default=1, help="engine threads per actor")
    ap.add_argument("--concurrency", type=int, default=2, help="scoring actors")
    ap.add_argument("--batch-size", type=int, default=4096, help="rows per batch handed to an actor")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--id-col", default="id")
    a = ap.parse_args()

    # One logical CPU more than the actors hold, for the read and write tasks: with every CPU
    # held by a scoring actor, the reads that feed them could never be scheduled.
    ray.init(num_cpus=a.concurrency * a.threads + 1, include_dashboard=False, ignore_reinit_error=True)
    # Several blocks per actor, so every actor gets work.
    ds = ray.data.read_parquet(a.input, override_num_blocks=a.concurrency * 4)
    scored = ds.map_batches(
        Scorer,
        fn_constructor_kwargs={"model": a.model, "threads": a.threads, "policy": a.policy,
                               "text_col": a.text_col, "id_col": a.id_col},
        batch_format="pyarrow",
        batch_size=a.batch_size,
        concurrency=a.concurrency,
        num_cpus=a.threads,
    )
    scored.write_parquet(a.output)
    ray.shutdown()


if __name__ == "__main__":
    main()
