"""One stage of the seed pipeline, run by `fdw-bench pipeline`.

Four stages hand data to each other through the S3 API only, as pipeline stages in
different frameworks do:

1. pyarrow generates random CSV files;
2. pyarrow converts them to Parquet;
3. polars reads the Parquet, transforms column values and writes Parquet again;
4. polars scans the transformed Parquet and aggregates it.

Every value is an integer or a string, so the aggregation is exact whatever order rows
are read in, and every mode's results can be compared for equality.

With PIPELINE_LOCAL_ROOT set instead of an endpoint, the same stages read and write files
under that directory (a tmpfs): the pipeline's compute with no S3 at all, its floor.

Usage: stage.py N. Settings come from PIPELINE_* variables (see `settings`). The stage
prints one JSON line: its number, the seconds its work took (after the imports), the
bytes it wrote, and for stage 4 the aggregation.
"""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def settings():
    env = os.environ
    return {
        "local_root": env.get("PIPELINE_LOCAL_ROOT"),
        "endpoint": env.get("PIPELINE_ENDPOINT"),
        "access_key": env.get("PIPELINE_ACCESS_KEY"),
        "secret_key": env.get("PIPELINE_SECRET_KEY"),
        "bucket": env["PIPELINE_BUCKET"],
        "prefix": env["PIPELINE_PREFIX"],
        "files": int(env["PIPELINE_FILES"]),
        "rows": int(env["PIPELINE_ROWS_PER_FILE"]),
        "seed": int(env["PIPELINE_SEED"]),
        "threads": int(env.get("PIPELINE_THREADS", "4")),
    }


CATEGORIES = [f"category-{i:02d}" for i in range(64)]


def part(s, stage, i, ext):
    return f"{s['bucket']}/{s['prefix']}/stage{stage}/part-{i:04d}.{ext}"


# --- stages 1 and 2: pyarrow ---------------------------------------------------------


def arrow_fs(s):
    import pyarrow.fs

    if s["local_root"]:
        return pyarrow.fs.SubTreeFileSystem(s["local_root"], pyarrow.fs.LocalFileSystem())
    return pyarrow.fs.S3FileSystem(
        access_key=s["access_key"],
        secret_key=s["secret_key"],
        endpoint_override=s["endpoint"].removeprefix("http://"),
        scheme="http",
        region="us-east-1",
    )


def stage1(s):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv

    fs = arrow_fs(s)
    names = pa.array(CATEGORIES)

    def generate(i):
        n, seed = s["rows"], s["seed"] * 1_000_003 + i

        def uniform(k, scale, kind):
            draws = pc.random(n, initializer=seed * 7 + k)
            return pc.cast(pc.floor(pc.multiply(draws, scale)), kind)

        ids = pc.add(pc.cumulative_sum(pa.nulls(n, pa.int64()).fill_null(1)), i * n - 1)
        table = pa.table(
            {
                "id": ids,
                "category": pc.take(names, uniform(1, len(CATEGORIES), pa.int32())),
                "value": uniform(2, 1_000_000, pa.int64()),
                "quantity": uniform(3, 100, pa.int32()),
                "note": pc.binary_join_element_wise(
                    "item-", pc.cast(pc.divide(ids, 7), pa.string()), ""
                ),
            }
        )
        with fs.open_output_stream(part(s, 1, i, "csv")) as out:
            pyarrow.csv.write_csv(table, out)
        return fs.get_file_info(part(s, 1, i, "csv")).size

    with ThreadPoolExecutor(s["threads"]) as pool:
        return sum(pool.map(generate, range(s["files"])))


def stage2(s):
    import pyarrow.csv
    import pyarrow.parquet as pq

    fs = arrow_fs(s)

    def convert(i):
        with fs.open_input_stream(part(s, 1, i, "csv")) as f:
            table = pyarrow.csv.read_csv(f)
        pq.write_table(table, part(s, 2, i, "parquet"), filesystem=fs)
        return fs.get_file_info(part(s, 2, i, "parquet")).size

    with ThreadPoolExecutor(s["threads"]) as pool:
        return sum(pool.map(convert, range(s["files"])))


# --- stages 3 and 4: polars ----------------------------------------------------------


def polars_url(s, path):
    """Where polars finds `path`: in S3, or under the local root."""
    return f"{s['local_root']}/{path}" if s["local_root"] else f"s3://{path}"


def polars_options(s):
    if s["local_root"]:
        return None
    return {
        "aws_access_key_id": s["access_key"],
        "aws_secret_access_key": s["secret_key"],
        "aws_endpoint_url": s["endpoint"],
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }


def stage3(s):
    import polars as pl

    options = polars_options(s)

    def transform(i):
        frame = pl.read_parquet(polars_url(s, part(s, 2, i, "parquet")), storage_options=options)
        frame = frame.with_columns(
            (pl.col("value") * 3 + pl.col("quantity")).alias("value_adjusted"),
            pl.col("category").str.to_uppercase(),
            (pl.col("quantity") % 10 == 0).alias("round_quantity"),
        ).drop("note")
        frame.write_parquet(polars_url(s, part(s, 3, i, "parquet")), storage_options=options)
        return frame.estimated_size()

    with ThreadPoolExecutor(s["threads"]) as pool:
        return sum(pool.map(transform, range(s["files"])))


def stage4(s):
    import polars as pl

    options = polars_options(s)
    result = (
        pl.scan_parquet(
            polars_url(s, f"{s['bucket']}/{s['prefix']}/stage3/*.parquet"),
            storage_options=options,
        )
        .group_by("category")
        .agg(
            pl.len().alias("rows"),
            pl.col("value_adjusted").sum().alias("value_adjusted_sum"),
            pl.col("quantity").max().alias("quantity_max"),
            pl.col("round_quantity").sum().alias("round_quantities"),
        )
        .sort("category")
        .collect()
    )
    result.write_parquet(
        polars_url(s, f"{s['bucket']}/{s['prefix']}/stage4/result.parquet"),
        storage_options=options,
    )
    return 0, result.to_dicts()


def main():
    stage = int(sys.argv[1])
    s = settings()
    work = {1: stage1, 2: stage2, 3: stage3, 4: stage4}[stage]
    # Import the framework before the clock starts: startup is not the stage's I/O.
    if stage <= 2:
        import pyarrow.csv  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    else:
        import polars  # noqa: F401
    started = time.perf_counter()
    done = work(s)
    seconds = time.perf_counter() - started
    written, result = done if isinstance(done, tuple) else (done, None)
    print(json.dumps({"stage": stage, "seconds": seconds, "bytes": written, "result": result}))


if __name__ == "__main__":
    main()
