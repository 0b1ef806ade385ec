"""A local fdw cluster serving the S3 API, started once for the Python tests.

It is the real `fdw-engine serve` process: three workers, R=2 W=2, ASYNC_THROUGH,
persisting to a temporary directory that the tests read to check persistence.
"""

import os
import pathlib
import queue
import signal
import subprocess
import threading
import time

import boto3
import botocore.config
import pytest

ACCESS_KEY = "PYTESTKEY"
SECRET_KEY = "pytest-secret-key"
ROOT = pathlib.Path(__file__).resolve().parents[2]


class Gateway:
    def __init__(self, url, under_store):
        self.url = url
        self.under_store = under_store
        self.host_port = url.removeprefix("http://")

    def client(self, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **config):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                **config,
            ),
        )

    def persisted(self, bucket, key):
        """The bytes the under-store holds for bucket/key, or None."""
        path = self.under_store / bucket / key
        return path.read_bytes() if path.is_file() else None

    def wait_persisted(self, bucket, key, data, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.persisted(bucket, key) == data:
                return
            time.sleep(0.05)
        raise AssertionError(f"{bucket}/{key} was not persisted within {timeout}s")


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    binary = os.environ.get("FDW_ENGINE_BIN", str(ROOT / "target" / "debug" / "fdw-engine"))
    under_store = tmp_path_factory.mktemp("under-store")
    log = open(tmp_path_factory.mktemp("logs") / "fdw-engine.log", "w+")
    proc = subprocess.Popen(
        [
            binary,
            "--pool-size",
            "512MiB",
            "serve",
            "--gateway",
            "127.0.0.1:0",
            "--under-store",
            f"file://{under_store}",
            "--access-key",
            ACCESS_KEY,
            "--secret-key",
            SECRET_KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    # Read stdout on a thread: a select() on the pipe misses lines already buffered.
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line.startswith("S3 gateway at "):
            url = line.split()[-1]
    if url is None:
        proc.kill()
        log.seek(0)
        raise RuntimeError(f"fdw-engine serve did not start:\n{log.read()}")
    yield Gateway(url, under_store)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
