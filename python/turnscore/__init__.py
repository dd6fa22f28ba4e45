"""turnscore: score AI-chat turns for ad interests and sensitive categories.

The engine is Rust (the same one the `turnscore` CLI runs); data goes in and out as pyarrow.

    import pyarrow as pa, turnscore
    eng = turnscore.Engine()                      # the bundled int8 all-MiniLM-L6-v2 model
    out = eng.score(pa.table({"id": ["a"], "text": ["where can I hike near Denver?"],
                              "region": ["US"], "consent_ads": [True], "is_minor": [False],
                              "account_linked": [True], "role": ["user"]}))

Every input row gives exactly one output row, in order: scored, suppressed by the policy (with
its reason), or rejected (`rejected:<why>`). Message text is never part of the output.

Copies: the input's Arrow buffers are borrowed through the Arrow C data interface; the text
column is read once into the engine's rows (to tokenize); the output batch is built in Rust and
handed to pyarrow without a copy. `score(..., spark=True)` casts three columns to types Spark
accepts (`reason` dictionary -> string, `tokens`/`windows` uint32 -> int64): those are copies.

Processes: the native engine owns a thread pool, which a fork does not carry over. An `Engine`
used in a process other than the one that made it (Spark's forked Python workers, multiprocessing)
opens its own native engine there on first use; the model file itself is memory-mapped, so every
process on a machine shares one copy of it through the page cache.
"""

import json
import os
import threading

import pyarrow as pa

from . import _native

__all__ = ["Engine", "output_schema", "spark_ddl", "FIELDS"]

#: Engine fields and the input column each is read from by default.
FIELDS = ("id", "text", "user_id", "conversation_id", "turn", "role", "region",
          "consent_ads", "is_minor", "account_linked", "ts")


class Engine:
    """A turnscore engine.

    model: path of a model file, or None for the model bundled in the module.
    threads: worker threads for tokenization and inference (0 = one per core, at most 256). Under
        Spark, set it to spark.task.cpus.
    policy: a policy file path or a dict (see `turnscore policy` in the CLI), or None for the
        built-in strict policy.
    batch_tokens: token budget of one encoder batch.
    """

    def __init__(self, model=None, threads=1, policy=None, batch_tokens=512):
        if isinstance(policy, dict):
            policy = json.dumps(policy)
        elif policy is not None:
            with open(policy, "r", encoding="utf-8") as f:
                policy = f.read()
        self._args = (None if model is None else os.fspath(model), int(threads), policy, int(batch_tokens))
        self._lock = threading.Lock()
        self._pid = None
        self._native_engine = None
        self._get()  # fail now, in the caller's process, on a bad model or policy

    def _get(self):
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._native_engine = _native.NativeEngine(*self._args)
                    self._pid = pid
        return self._native_engine

    def __getstate__(self):
        return {"args": self._args}

    def __setstate__(self, state):
        self._args = state["args"]
        self._lock = threading.Lock()
        self._pid = None
        self._native_engine = None

    def score(self, data, text_col="text", id_col="id", columns=None, max_text_bytes=None, spark=False):
        """Scores a pyarrow RecordBatch or Table (or anything with `to_batches()`).

        Returns the same kind: a RecordBatch for a RecordBatch, a Table otherwise, with the
        columns of `output_schema()`. `text_col` and `id_col` name the input columns holding the
        text and the id; `columns` maps any other engine field (see FIELDS) to an input column.
        Columns the input lacks are read as missing (the policy reads missing fields strictly).
        `spark=True` returns Spark-compatible types (see the module documentation).
        `max_text_bytes`: texts longer than this are rejected as `rejected:too_long` (default
        100,000 bytes, as in the CLI).
        """
        fields = {"text": text_col, "id": id_col}
        for k, v in (columns or {}).items():
            if k not in FIELDS:
                raise ValueError(f"unknown field {k!r}; fields are {FIELDS}")
            fields[k] = v
        eng = self._get()
        if isinstance(data, pa.RecordBatch):
            out = eng.score_batch(data, fields, max_text_bytes)
            return _spark_cast(out) if spark else out
        batches = data.to_batches() if hasattr(data, "to_batches") else list(data)
        outs = [eng.score_batch(b, fields, max_text_bytes) for b in batches]
        if spark:
            outs = [_spark_cast(b) for b in outs]
        schema = self.output_schema(spark=spark)
        return pa.Table.from_batches(outs, schema=schema)

    def output_schema(self, spark=False):
        """The output schema for this engine's model, as a pyarrow.Schema."""
        s = self._get().output_schema()
        return _spark_schema(s) if spark else s

    def spark_ddl(self):
        """The output schema as a Spark DDL string (for mapInArrow)."""
        return _ddl(self.output_schema(spark=True))

    @property
    def labels(self):
        """{"topics": [{"name", "threshold", "trained"}], "sensitive": [...]}"""
        t, s = self._get().labels()
        f = lambda xs: [{"name": n, "threshold": th, "trained": tr} for n, th, tr in xs]
        return {"topics": f(t), "sensitive": f(s)}

    @property
    def model_info(self):
        """Model id, sha256, quantization, kernel tier, threads, window, policy version and hash."""
        return json.loads(self._get().model_info())


_default = None


def output_schema(spark=False):
    """The output schema of the bundled model, as a pyarrow.Schema."""
    global _default
    if _default is None:
        _default = Engine()
    return _default.output_schema(spark=spark)


def spark_ddl():
    """The output schema of the bundled model as a Spark DDL string."""
    return _ddl(output_schema(spark=True))


def _spark_schema(s):
    fields = []
    for f in s:
        if pa.types.is_dictionary(f.type):
            f = pa.field(f.name, pa.string(), f.nullable)
        elif pa.types.is_uint32(f.type):
            f = pa.field(f.name, pa.int64(), f.nullable)
        fields.append(f)
    return pa.schema(fields)


def _spark_cast(batch):
    return batch.cast(_spark_schema(batch.schema))


def _ddl_type(t):
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "STRING"
    if pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_int32(t):
        return "INT"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_list(t):
        return f"ARRAY<{_ddl_type(t.value_type)}>"
    if pa.types.is_struct(t):
        return "STRUCT<" + ", ".join(f"`{t.field(i).name}`: {_ddl_type(t.field(i).type)}" for i in range(t.num_fields)) + ">"
    raise TypeError(f"no Spark type for {t}")


def _ddl(schema):
    return ", ".join(f"`{f.name}` {_ddl_type(f.type)}" for f in schema)
