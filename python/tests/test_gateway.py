"""The S3 gateway with the clients pipelines use: boto3, pyarrow's S3FileSystem and
polars, each against a real `fdw-engine serve` process."""

import base64
import hashlib
import io
import random
import zlib

import boto3.s3.transfer
import botocore.exceptions
import polars as pl
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import pytest

BUCKET = "pipeline"
MiB = 1024 * 1024


def data(n, seed):
    return random.Random(seed).randbytes(n)


@pytest.fixture(scope="module", autouse=True)
def bucket(gateway):
    """The bucket these tests write, created as a user would (`aws s3 mb`)."""
    s3 = gateway.client()
    s3.create_bucket(Bucket=BUCKET)
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    return BUCKET


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_empty_bodies_leave_the_connection_clean_and_etags_are_md5s(gateway):
    """After an empty PutObject, the next request on the same connection is answered
    at once and whole (it once stalled 30 s and came back with no ETag); every ETag is
    the body's MD5, as s3cmd and rclone check."""
    s3 = gateway.client(read_timeout=10)
    for key, body in [("e/empty", b""), ("e/next", b"next"), ("e/empty2", b""), ("e/last", b"x" * 100)]:
        put = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), key
        got = s3.get_object(Bucket=BUCKET, Key=key)
        assert got["Body"].read() == body
        assert got["ETag"] == put["ETag"]


def test_boto3_put_get_ranges_and_persistence(gateway):
    s3 = gateway.client()
    body = data(3 * MiB + 17, 1)
    put = s3.put_object(Bucket=BUCKET, Key="b/one.bin", Body=body, ChecksumAlgorithm="CRC32")
    crc = zlib.crc32(body).to_bytes(4, "big")
    assert put["ChecksumCRC32"] == base64.b64encode(crc).decode()
    # botocore asks for the checksum and validates the body against it.
    got = s3.get_object(Bucket=BUCKET, Key="b/one.bin", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    for header, want in [
        ("bytes=0-0", body[:1]),
        ("bytes=1000-1999", body[1000:2000]),
        ("bytes=-10", body[-10:]),
        (f"bytes={len(body) - 5}-", body[-5:]),
    ]:
        part = s3.get_object(Bucket=BUCKET, Key="b/one.bin", Range=header)
        assert part["Body"].read() == want, header
        assert part["ContentRange"].endswith(f"/{len(body)}")
    head = s3.head_object(Bucket=BUCKET, Key="b/one.bin")
    assert head["ContentLength"] == len(body)
    gateway.wait_persisted(BUCKET, "b/one.bin", body)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.get_object(Bucket=BUCKET, Key="b/one.bin", Range=f"bytes={len(body)}-")
    assert error_code(err) == "InvalidRange"


def test_boto3_multipart_uploads(gateway):
    s3 = gateway.client()
    body = data(13 * MiB + 5, 2)
    # The managed transfer: parallel parts of 5 MiB, each with a CRC32 in its trailer.
    config = boto3.s3.transfer.TransferConfig(
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4
    )
    s3.upload_fileobj(io.BytesIO(body), BUCKET, "mp/managed.bin", Config=config)
    assert s3.get_object(Bucket=BUCKET, Key="mp/managed.bin")["Body"].read() == body
    gateway.wait_persisted(BUCKET, "mp/managed.bin", body)

    # The low-level calls, with ListParts and an abort.
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="mp/manual.bin")
    uid = upload["UploadId"]
    parts = [data(5 * MiB, 3), data(1234, 4)]
    etags = []
    for number, part in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket=BUCKET, Key="mp/manual.bin", UploadId=uid, PartNumber=number, Body=part
        )
        etags.append({"PartNumber": number, "ETag": answer["ETag"]})
    listed = s3.list_parts(Bucket=BUCKET, Key="mp/manual.bin", UploadId=uid)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, 5 * MiB), (2, 1234)]
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="mp/manual.bin", UploadId=uid, MultipartUpload={"Parts": etags}
    )
    assert s3.get_object(Bucket=BUCKET, Key="mp/manual.bin")["Body"].read() == b"".join(parts)

    aborted = s3.create_multipart_upload(Bucket=BUCKET, Key="mp/aborted.bin")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="mp/aborted.bin", UploadId=aborted, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=BUCKET, Key="mp/aborted.bin", UploadId=aborted)
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.list_parts(Bucket=BUCKET, Key="mp/aborted.bin", UploadId=aborted)
    assert error_code(err) == "NoSuchUpload"
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.head_object(Bucket=BUCKET, Key="mp/aborted.bin")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_boto3_listing_with_pagination_and_delimiters(gateway):
    s3 = gateway.client()
    keys = [f"list/day={d}/part-{p}.csv" for d in range(3) for p in range(7)] + ["list/top.txt"]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="list/", PaginationConfig={"PageSize": 5}
    )
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert listed == sorted(keys)
    assert all(
        page["KeyCount"] <= 5
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix="list/", PaginationConfig={"PageSize": 5}
        )
    )
    top = s3.list_objects_v2(Bucket=BUCKET, Prefix="list/", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == [
        "list/day=0/",
        "list/day=1/",
        "list/day=2/",
    ]
    assert [o["Key"] for o in top["Contents"]] == ["list/top.txt"]
    # Pages of 2 over folded prefixes: each prefix once.
    seen = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="list/", Delimiter="/", PaginationConfig={"PageSize": 2}
    ):
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        seen += [o["Key"] for o in page.get("Contents", [])]
    assert sorted(seen) == ["list/day=0/", "list/day=1/", "list/day=2/", "list/top.txt"]
    # ListObjects (V1), which boto3 still offers.
    v1 = s3.list_objects(Bucket=BUCKET, Prefix="list/day=1/")
    assert len(v1["Contents"]) == 7


def test_boto3_deletes(gateway):
    s3 = gateway.client()
    for i in range(5):
        s3.put_object(Bucket=BUCKET, Key=f"del/{i}", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key="del/0")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        s3.get_object(Bucket=BUCKET, Key="del/0")
    assert error_code(err) == "NoSuchKey"
    answer = s3.delete_objects(
        Bucket=BUCKET, Delete={"Objects": [{"Key": f"del/{i}"} for i in range(1, 5)]}
    )
    assert sorted(d["Key"] for d in answer["Deleted"]) == [f"del/{i}" for i in range(1, 5)]
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="del/")["KeyCount"] == 0


def test_boto3_copy(gateway):
    s3 = gateway.client()
    s3.put_object(Bucket=BUCKET, Key="copy/source", Body=b"copied bytes")
    s3.copy_object(Bucket=BUCKET, Key="copy/target", CopySource={"Bucket": BUCKET, "Key": "copy/source"})
    assert s3.get_object(Bucket=BUCKET, Key="copy/target")["Body"].read() == b"copied bytes"


def test_bad_credentials_are_refused_with_s3s_errors(gateway):
    wrong_secret = gateway.client(secret_key="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        wrong_secret.list_objects_v2(Bucket=BUCKET)
    assert error_code(err) == "SignatureDoesNotMatch"
    unknown = gateway.client(access_key="NOBODY")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        unknown.put_object(Bucket=BUCKET, Key="never", Body=b"x")
    assert error_code(err) == "InvalidAccessKeyId"
    with pytest.raises(botocore.exceptions.ClientError):
        gateway.client().head_object(Bucket=BUCKET, Key="never")


def s3fs(gateway):
    from conftest import ACCESS_KEY, SECRET_KEY

    return pyarrow.fs.S3FileSystem(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        endpoint_override=gateway.host_port,
        scheme="http",
        region="us-east-1",
    )


def test_pyarrow_s3filesystem_parquet_round_trip(gateway):
    fs = s3fs(gateway)
    rows = 200_000
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "value": pa.array([random.Random(5).random() for _ in range(rows)]),
            "name": pa.array([f"name-{i % 1000}" for i in range(rows)]),
        }
    )
    pq.write_table(table, f"{BUCKET}/arrow/table.parquet", filesystem=fs)
    assert pq.read_table(f"{BUCKET}/arrow/table.parquet", filesystem=fs).equals(table)
    # A ranged read, as Parquet readers make them.
    with fs.open_input_file(f"{BUCKET}/arrow/table.parquet") as f:
        size = f.size()
        assert f.read_at(4, size - 4) == b"PAR1"
    # A large stream goes up in multipart parts.
    blob = data(12 * MiB, 6)
    with fs.open_output_stream(f"{BUCKET}/arrow/blob.bin") as out:
        out.write(blob)
    with fs.open_input_stream(f"{BUCKET}/arrow/blob.bin") as f:
        assert f.read() == blob
    infos = fs.get_file_info(pyarrow.fs.FileSelector(f"{BUCKET}/arrow", recursive=True))
    assert sorted(i.path for i in infos if i.type == pyarrow.fs.FileType.File) == [
        f"{BUCKET}/arrow/blob.bin",
        f"{BUCKET}/arrow/table.parquet",
    ]
    fs.delete_file(f"{BUCKET}/arrow/blob.bin")
    assert fs.get_file_info(f"{BUCKET}/arrow/blob.bin").type == pyarrow.fs.FileType.NotFound
    gateway.wait_persisted(BUCKET, "arrow/table.parquet", gateway.client().get_object(
        Bucket=BUCKET, Key="arrow/table.parquet")["Body"].read())


def test_polars_reads_and_writes_through_the_gateway(gateway):
    from conftest import ACCESS_KEY, SECRET_KEY

    options = {
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_endpoint_url": gateway.url,
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }
    frame = pl.DataFrame(
        {"key": [i % 17 for i in range(100_000)], "value": [float(i) for i in range(100_000)]}
    )
    frame.write_parquet(f"s3://{BUCKET}/polars/frame.parquet", storage_options=options)
    back = pl.read_parquet(f"s3://{BUCKET}/polars/frame.parquet", storage_options=options)
    assert back.equals(frame)
    total = (
        pl.scan_parquet(f"s3://{BUCKET}/polars/frame.parquet", storage_options=options)
        .group_by("key")
        .agg(pl.col("value").sum())
        .sort("key")
        .collect()
    )
    assert total.equals(frame.group_by("key").agg(pl.col("value").sum()).sort("key"))
