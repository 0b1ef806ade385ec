"""`fdw-bench pipeline` end to end on a tiny data set: every mode (direct S3, fdw, and
files in a tmpfs) runs all four stages, their aggregations agree (the harness fails
otherwise), and the report and figure are written. Behaviour only; the timings are the
benchmark's business."""

import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_seed_pipeline_runs_every_mode_and_agrees(tmp_path):
    binary = os.environ.get("FDW_BENCH_BIN", str(ROOT / "target" / "debug" / "fdw-bench"))
    out = tmp_path / "report"
    subprocess.run(
        [
            binary,
            "pipeline",
            "--size", "2MiB",
            "--files", "3",
            "--runs", "1",
            "--pool-size", "256MiB",
            "--no-emulation",
            "--python", str(ROOT / "target" / "python" / "bin" / "python"),
            "--out", str(out),
        ],
        cwd=ROOT,
        check=True,
        timeout=600,
    )
    report = json.loads((out / "pipeline.json").read_text())
    assert [r["mode"] for r in report["runs"]] == ["direct S3", "fdw", "memory, no S3"]
    assert all(len(r["stages"]) == 4 and all(t > 0 for t in r["stages"]) for r in report["runs"])
    assert report["result_groups"] == 64
    assert [r["persisted_after"] is not None for r in report["runs"]] == [False, True, False]
    assert (out / "pipeline.svg").read_text().startswith("<svg")
