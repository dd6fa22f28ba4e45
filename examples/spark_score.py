#!/usr/bin/env python3
"""Score a Parquet dataset of chat turns with Spark, through `mapInArrow`.

Each Spark task hands the engine pyarrow record batches; the engine returns one output row per
input row (scored, suppressed by the policy with its reason, or rejected with its reason), with
the declared output schema; the result is written as Parquet. Message text never reaches the
output.

    pip install pyspark turnscore-*.whl          # the wheel: see README.md, "Python"
    python3 examples/spark_score.py turns.parquet scored/ --master 'local[2]'
    spark-submit --conf spark.task.cpus=2 examples/spark_score.py s3://…/turns/ s3://…/scored/ \
        --threads 2 --model /mnt/models/all-minilm-l6-v2.tsm

See docs/SCALE.md for shipping the wheel and the model file to a cluster, threads against
spark.task.cpus, and batch sizes.
"""
import argparse

from pyspark.sql import SparkSession

import turnscore

# One engine per Python worker process (Spark reuses workers across tasks): the model is opened
# once per process and shared by its tasks; the file itself is shared by all processes of a node
# through the page cache.
_ENGINES = {}


def engine(model, threads, policy):
    key = (model, threads, policy)
    if key not in _ENGINES:
        _ENGINES[key] = turnscore.Engine(model=model, threads=threads, policy=policy)
    return _ENGINES[key]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="Parquet file or directory of turns (columns: id, text, and the policy fields)")
    ap.add_argument("output", help="output directory (Parquet)")
    ap.add_argument("--model", default=None, help="model file on every node's local disk (default: the bundled model)")
    ap.add_argument("--policy", default=None, help="policy JSON file (default: the built-in strict policy)")
    ap.add_argument("--threads", type=int, default=1, help="engine threads per task; match spark.task.cpus")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--id-col", default="id")
    ap.add_argument("--batch-rows", type=int, default=4096, help="rows per Arrow batch handed to the engine")
    ap.add_argument("--master", default=None, help="Spark master (default: from spark-submit, else local[*])")
    a = ap.parse_args()

    b = SparkSession.builder.appName("turnscore")
    if a.master:
        b = b.master(a.master)
    spark = b.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(a.batch_rows)).getOrCreate()

    # The output schema, declared up front (Spark DDL; Spark-compatible types: see
    # turnscore.Engine.score(spark=True)).
    ddl = engine(a.model, a.threads, a.policy).spark_ddl()
    model, threads, policy, text_col, id_col = a.model, a.threads, a.policy, a.text_col, a.id_col

    def score(batches):
        eng = engine(model, threads, policy)
        for batch in batches:
            yield eng.score(batch, text_col=text_col, id_col=id_col, spark=True)

    df = spark.read.parquet(a.input)
    df.mapInArrow(score, ddl).write.mode("overwrite").parquet(a.output)
    spark.stop()


if __name__ == "__main__":
    main()
