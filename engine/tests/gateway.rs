//! The S3 gateway with a real S3 client: aws-sdk-s3 over HTTP to a gateway in front of a
//! three-worker cluster in this process, whose bucket persists to an in-process S3
//! server. Every answer is checked against what the cluster and the under-store hold.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::Client as S3Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete,
    ObjectIdentifier,
};
use common::{eventually, pool};
use fdw_client::{Client, ErrorKind, WriteType};
use fdw_engine::LocalCluster;
use fdw_engine::gateway::{AccessKey, Gateway, GatewayConfig};
use fdw_net::wire::Replication;
use fdw_net::{BucketName, ObjectKey};
use fdw_persist::s3_server::S3Server;
use fdw_persist::{S3Config, S3Store, UnderStore, crc32_header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUCKET: &str = "stage-1";
/// A bucket whose gateway writes are memory-only.
const SCRATCH: &str = "scratch";
const ACCESS: &str = "PIPELINEKEY";
const SECRET: &str = "pipeline-secret";

struct Setup {
    _root: tempfile::TempDir,
    _server: S3Server,
    /// The under-store, as the persist pipeline writes it.
    lake: S3Store,
    cluster: LocalCluster,
    client: Client,
    gateway: Gateway,
    /// aws-sdk-s3, path-style, with the gateway's key.
    s3: S3Client,
}

async fn setup(configure: impl FnOnce(&mut GatewayConfig)) -> Setup {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let server = S3Server::start(root.path()).await.unwrap();
    let lake = server.config();
    let cluster = LocalCluster::start(3, pool(256 << 20), |c| {
        c.persist.s3 = Some(lake.clone());
        c.persist.buckets.insert(
            BucketName::new(BUCKET).unwrap(),
            "s3://lake/fdw".parse().unwrap(),
        );
        // Where created buckets persist.
        c.persist.default_location = Some("s3://lake/buckets".parse().unwrap());
        c.persist.part_bytes = 5 << 20;
    })
    .await
    .unwrap();
    let client = cluster.client("gateway").await.unwrap();
    let default = Replication::new(WriteType::AsyncThrough, 2, 2).unwrap();
    let mut config = GatewayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![AccessKey {
            access_key: ACCESS.into(),
            secret_key: SECRET.into(),
        }],
        default,
    );
    config.buckets.insert(BUCKET.into(), default);
    config.buckets.insert(
        SCRATCH.into(),
        Replication::new(WriteType::MustCache, 3, 2).unwrap(),
    );
    configure(&mut config);
    let gateway = Gateway::start(config, cluster.client("gateway").await.unwrap())
        .await
        .unwrap();
    let s3 = s3_client(gateway.addr(), ACCESS, SECRET);
    Setup {
        lake: S3Store::new(&lake, "lake", "fdw"),
        _root: root,
        _server: server,
        cluster,
        client,
        gateway,
        s3,
    }
}

fn s3_client(addr: SocketAddr, access: &str, secret: &str) -> S3Client {
    let store = S3Store::new(
        &S3Config {
            endpoint: Some(format!("http://{addr}")),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: access.into(),
            secret_access_key: secret.into(),
            session_token: None,
            attempt_timeout: Duration::from_secs(30),
        },
        BUCKET,
        "",
    );
    store.client().clone()
}

/// How many nodes hold the key in memory.
fn holders(cluster: &LocalCluster, bucket: &str, key: &str) -> usize {
    let (bucket, key) = (
        BucketName::new(bucket).unwrap(),
        ObjectKey::new(key).unwrap(),
    );
    (0..3)
        .filter(|&id| {
            cluster
                .node(id)
                .is_some_and(|n| n.store().head(&bucket, &key).is_ok())
        })
        .count()
}

/// Waits for `want` nodes to hold the key: replicas past the quorum may still be copying
/// when the put is acknowledged.
async fn wait_for_holders(cluster: &LocalCluster, bucket: &str, key: &str, want: usize) {
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while holders(cluster, bucket, key) != want {
        assert!(
            tokio::time::Instant::now() < until,
            "{bucket}/{key}: {} holders, never {want}",
            holders(cluster, bucket, key)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 12) as u8)
        .collect()
}

async fn body(output: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    output.body.collect().await.unwrap().into_bytes().to_vec()
}

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(err: &E) -> String {
    err.code().unwrap_or("(no code)").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_round_trip_checked_persisted_and_replicated_as_configured() {
    let s = setup(|_| {}).await;
    let data = bytes((3 << 20) + 12_345, 1);

    // PUT with a CRC32 (aws-chunked, the checksum in the trailer): acknowledged,
    // stored in fdw byte for byte with that CRC, and persisted to the lake.
    let put =
        s.s3.put_object()
            .bucket(BUCKET)
            .key("dir/a.bin")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
    let crc = crc32_header(crc32fast::hash(&data));
    assert_eq!(put.checksum_crc32(), Some(crc.as_str()));
    assert_eq!(s.client.get(BUCKET, "dir/a.bin").await.unwrap(), data);
    let info = s.client.head(BUCKET, "dir/a.bin").await.unwrap();
    assert_eq!(info.write_type, WriteType::AsyncThrough);
    assert_eq!(holders(&s.cluster, BUCKET, "dir/a.bin"), 2);
    s.client
        .wait_persisted(BUCKET, "dir/a.bin", info.version, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(s.lake.get("dir/a.bin", None).await.unwrap(), data[..]);

    // GET whole: the bytes, the CRC when asked, the PUT's ETag.
    let got =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("dir/a.bin")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
    assert_eq!(got.checksum_crc32(), Some(crc.as_str()));
    assert_eq!(got.e_tag(), put.e_tag());
    let md5 = fdw_net::wire::Digest::of_bytes(&data).etag();
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{md5}\"").as_str()),
        "S3's ETag: the MD5"
    );
    assert_eq!(got.content_length(), Some(data.len() as i64));
    let modified = got.last_modified().unwrap().secs();
    #[allow(clippy::disallowed_methods)] // comparing with a wall-clock timestamp
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - modified).abs() < 300,
        "Last-Modified is the commit time"
    );
    assert_eq!(body(got).await, data);

    // Ranges: closed, open-ended, suffix; each with the whole object's length.
    let len = data.len();
    for (range, want) in [
        ("bytes=100-199".to_owned(), 100..200),
        (format!("bytes={}-", len - 10), len - 10..len),
        ("bytes=-4096".to_owned(), len - 4096..len),
        (format!("bytes=5-{}", len + 99), 5..len),
    ] {
        let got =
            s.s3.get_object()
                .bucket(BUCKET)
                .key("dir/a.bin")
                .range(&range)
                .send()
                .await
                .unwrap();
        assert_eq!(
            got.content_range(),
            Some(format!("bytes {}-{}/{len}", want.start, want.end - 1).as_str()),
            "{range}"
        );
        assert_eq!(
            got.checksum_crc32(),
            None,
            "a range has no whole-object CRC"
        );
        assert_eq!(body(got).await, data[want], "{range}");
    }
    let err =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("dir/a.bin")
            .range(format!("bytes={len}-"))
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "InvalidRange");

    // HEAD agrees.
    let head =
        s.s3.head_object()
            .bucket(BUCKET)
            .key("dir/a.bin")
            .send()
            .await
            .unwrap();
    assert_eq!(head.content_length(), Some(len as i64));
    assert_eq!(head.e_tag(), put.e_tag());

    // A body whose CRC32 is wrong is refused and nothing is stored.
    let err =
        s.s3.put_object()
            .bucket(BUCKET)
            .key("dir/bad.bin")
            .checksum_crc32(crc32_header(crc32fast::hash(b"something else")))
            .body(ByteStream::from(bytes(200_000, 2)))
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "BadDigest");
    assert_eq!(
        s.client
            .head(BUCKET, "dir/bad.bin")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    // Empty objects.
    s.s3.put_object()
        .bucket(BUCKET)
        .key("empty")
        .body(ByteStream::from(Vec::new()))
        .send()
        .await
        .unwrap();
    let got =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("empty")
            .send()
            .await
            .unwrap();
    assert!(body(got).await.is_empty());
    // An empty object has no byte a range could name, not even a suffix.
    let err =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("empty")
            .range("bytes=-8")
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "InvalidRange");

    // The bucket's write settings, and a request's x-fdw-* headers over them.
    s.s3.put_object()
        .bucket(SCRATCH)
        .key("tmp")
        .body(ByteStream::from(bytes(1000, 3)))
        .send()
        .await
        .unwrap();
    let info = s.client.head(SCRATCH, "tmp").await.unwrap();
    assert_eq!(info.write_type, WriteType::MustCache);
    wait_for_holders(&s.cluster, SCRATCH, "tmp", 3).await;
    s.s3.put_object()
        .bucket(BUCKET)
        .key("cached")
        .body(ByteStream::from(bytes(1000, 4)))
        .customize()
        .mutate_request(|req| {
            req.headers_mut().insert("x-fdw-write-type", "MUST_CACHE");
            req.headers_mut().insert("x-fdw-replicas", "1");
        })
        .send()
        .await
        .unwrap();
    let info = s.client.head(BUCKET, "cached").await.unwrap();
    assert_eq!(info.write_type, WriteType::MustCache);
    assert_eq!(holders(&s.cluster, BUCKET, "cached"), 1);
    let err =
        s.s3.put_object()
            .bucket(BUCKET)
            .key("bad-override")
            .body(ByteStream::from(vec![1]))
            .customize()
            .mutate_request(|req| {
                req.headers_mut().insert("x-fdw-quorum", "3");
            })
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");

    // Copy: a new object with its own version, in the destination bucket's settings.
    let copied =
        s.s3.copy_object()
            .bucket(SCRATCH)
            .key("copy")
            .copy_source(format!("{BUCKET}/dir/a.bin"))
            .send()
            .await
            .unwrap();
    assert_eq!(
        copied.copy_object_result().unwrap().e_tag(),
        put.e_tag(),
        "a copy has the same bytes, so the same MD5 ETag"
    );
    assert_eq!(s.client.get(SCRATCH, "copy").await.unwrap(), data);

    // Deletes, one and many; missing keys and buckets are named as S3 names them.
    s.s3.delete_object()
        .bucket(BUCKET)
        .key("empty")
        .send()
        .await
        .unwrap();
    let err =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("empty")
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");
    let deleted =
        s.s3.delete_objects()
            .bucket(BUCKET)
            .delete(
                Delete::builder()
                    .objects(
                        ObjectIdentifier::builder()
                            .key("dir/a.bin")
                            .build()
                            .unwrap(),
                    )
                    .objects(ObjectIdentifier::builder().key("cached").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    assert_eq!(deleted.deleted().len(), 2);
    assert!(deleted.errors().is_empty());
    for key in ["dir/a.bin", "cached"] {
        assert_eq!(
            s.client.head(BUCKET, key).await.unwrap_err().kind(),
            ErrorKind::NotFound,
            "{key}"
        );
    }
    let err =
        s.s3.get_object()
            .bucket("nope")
            .key("x")
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
    let err = s.s3.head_bucket().bucket("nope").send().await.unwrap_err();
    assert!(
        err.raw_response()
            .is_some_and(|r| r.status().as_u16() == 404)
    );
    s.s3.head_bucket().bucket(BUCKET).send().await.unwrap();
    drop(s.cluster);
}

/// The bucket names `s3`'s key sees in ListBuckets.
async fn bucket_names(s3: &S3Client) -> Vec<String> {
    s3.list_buckets()
        .send()
        .await
        .unwrap()
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_cluster_state_created_listed_and_deleted() {
    let s = setup(|c| {
        c.keys.push(AccessKey {
            access_key: "ALTKEY".into(),
            secret_key: "alt-secret".into(),
        })
    })
    .await;
    let alt = s3_client(s.gateway.addr(), "ALTKEY", "alt-secret");
    let put = |bucket: &'static str, key: &'static str| {
        s.s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from_static(b"data"))
            .send()
    };

    // A bucket nobody created does not exist, whatever is asked of it.
    assert_eq!(code(&put("fresh", "a").await.unwrap_err()), "NoSuchBucket");
    let err = s.s3.get_object().bucket("fresh").key("a").send().await;
    assert_eq!(code(&err.unwrap_err()), "NoSuchBucket");
    let err = s.s3.list_objects_v2().bucket("fresh").send().await;
    assert_eq!(code(&err.unwrap_err()), "NoSuchBucket");
    assert!(s.s3.head_bucket().bucket("fresh").send().await.is_err());
    let err = s.s3.create_bucket().bucket("fdw.buckets").send().await;
    assert_eq!(code(&err.unwrap_err()), "InvalidBucketName", "reserved");

    // Created: again by its owner is fine, by another key it is taken.
    s.s3.create_bucket().bucket("fresh").send().await.unwrap();
    s.s3.create_bucket().bucket("fresh").send().await.unwrap();
    let err = alt
        .create_bucket()
        .bucket("fresh")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "BucketAlreadyExists");
    assert_eq!(bucket_names(&s.s3).await, ["fresh", SCRATCH, BUCKET]);
    assert_eq!(bucket_names(&alt).await, [SCRATCH, BUCKET], "not alt's");
    // Every gateway of the cluster knows it, not only the one that created it.
    let other = anonymous_gateway(&s.cluster, |_| {}).await;
    let head = |addr: SocketAddr, bucket: &str| {
        let request = format!("HEAD /{bucket} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        async move { unsigned(addr, &request).await.0 }
    };
    assert!(head(other.addr(), "fresh").await.contains("200"));
    assert!(head(other.addr(), "never-made").await.contains("404"));

    // Not empty: refused. Its uploads in progress go with it once it is.
    put("fresh", "a").await.unwrap();
    let upload =
        s.s3.create_multipart_upload()
            .bucket("fresh")
            .key("big")
            .send()
            .await
            .unwrap();
    s.s3.upload_part()
        .bucket("fresh")
        .key("big")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .unwrap();
    let err =
        s.s3.delete_bucket()
            .bucket("fresh")
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "BucketNotEmpty");
    s.s3.delete_object()
        .bucket("fresh")
        .key("a")
        .send()
        .await
        .unwrap();
    s.s3.delete_bucket().bucket("fresh").send().await.unwrap();
    let staged = s.client.list("fresh", "", None, 100).await.unwrap();
    assert!(staged.entries.is_empty(), "uploads removed: {staged:?}");
    assert!(head(other.addr(), "fresh").await.contains("404"));
    assert_eq!(code(&put("fresh", "a").await.unwrap_err()), "NoSuchBucket");
    assert_eq!(bucket_names(&s.s3).await, [SCRATCH, BUCKET]);
    let err =
        s.s3.delete_bucket()
            .bucket("fresh")
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "NoSuchBucket");
    // Gone, the name is free for anyone.
    alt.create_bucket().bucket("fresh").send().await.unwrap();
    assert_eq!(bucket_names(&alt).await, ["fresh", SCRATCH, BUCKET]);
    // Configured buckets stay.
    let err =
        s.s3.delete_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "InvalidRequest");
    drop(other);
    drop(s.cluster);
}

/// Uploads `body` as part 1 of upload `id` of `BUCKET/key`; the part as completion names it.
async fn one_part(s3: &S3Client, key: &str, id: &str, body: &'static [u8]) -> CompletedPart {
    let part = s3
        .upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap();
    CompletedPart::builder()
        .part_number(1)
        .e_tag(part.e_tag().unwrap())
        .build()
}

/// The headers an object is written with, each replica's copy of them.
fn replica_metadata(cluster: &LocalCluster, bucket: &str, key: &str) -> Vec<Vec<(String, String)>> {
    let (bucket, key) = (
        BucketName::new(bucket).unwrap(),
        ObjectKey::new(key).unwrap(),
    );
    (0..3)
        .filter_map(|id| cluster.node(id)?.store().head(&bucket, &key).ok())
        .map(|meta| {
            meta.metadata
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_headers_are_kept_through_put_multipart_and_copy() {
    let s = setup(|_| {}).await;
    let put =
        s.s3.put_object()
            .bucket(BUCKET)
            .key("m/put.csv")
            .content_type("text/csv")
            .cache_control("max-age=60")
            .content_disposition("attachment; filename=\"put.csv\"")
            .content_encoding("gzip")
            .content_language("en")
            .metadata("stage", "2")
            .metadata("owner", "pipeline é")
            .body(ByteStream::from_static(b"a,b\n"))
            .send()
            .await
            .unwrap();
    let head =
        s.s3.head_object()
            .bucket(BUCKET)
            .key("m/put.csv")
            .send()
            .await
            .unwrap();
    assert_eq!(head.e_tag(), put.e_tag());
    assert_eq!(head.content_type(), Some("text/csv"));
    assert_eq!(head.cache_control(), Some("max-age=60"));
    assert_eq!(
        head.content_disposition(),
        Some("attachment; filename=\"put.csv\"")
    );
    assert_eq!(head.content_encoding(), Some("gzip"));
    assert_eq!(head.content_language(), Some("en"));
    let user = head.metadata().unwrap();
    assert_eq!(user["stage"], "2");
    // The SDK sent the non-ASCII value RFC 2047-encoded; S3 keeps it as sent.
    assert_eq!(user["owner"], "=?UTF-8?B?cGlwZWxpbmUgw6k=?=");
    // Every replica holds them, so a failover serves them too.
    let copies = replica_metadata(&s.cluster, BUCKET, "m/put.csv");
    assert_eq!(copies.len(), 2);
    assert!(
        copies.iter().all(|c| c == &copies[0] && c.len() == 7),
        "{copies:?}"
    );
    let got =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("m/put.csv")
            .response_content_type("application/octet-stream")
            .send()
            .await
            .unwrap();
    assert_eq!(
        got.content_type(),
        Some("application/octet-stream"),
        "asked"
    );
    assert_eq!(got.metadata().unwrap()["stage"], "2");
    // None given: no user metadata (the SDK sends a type of its own; the default is
    // checked in the gateway's unit tests).
    s.s3.put_object()
        .bucket(BUCKET)
        .key("m/bare")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    let bare =
        s.s3.head_object()
            .bucket(BUCKET)
            .key("m/bare")
            .send()
            .await
            .unwrap();
    assert!(bare.metadata().is_none_or(|m| m.is_empty()));

    // Multipart: the headers of CreateMultipartUpload.
    let upload =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key("m/multi.parquet")
            .content_type("application/vnd.apache.parquet")
            .metadata("rows", "12000")
            .send()
            .await
            .unwrap();
    let id = upload.upload_id().unwrap();
    let part = one_part(&s.s3, "m/multi.parquet", id, b"PAR1").await;
    complete(&s.s3, "m/multi.parquet", id, vec![part])
        .await
        .unwrap();
    let head =
        s.s3.head_object()
            .bucket(BUCKET)
            .key("m/multi.parquet")
            .send()
            .await
            .unwrap();
    assert_eq!(head.content_type(), Some("application/vnd.apache.parquet"));
    assert_eq!(head.metadata().unwrap()["rows"], "12000");

    // Copy keeps the source's headers, or replaces them when told.
    s.s3.copy_object()
        .bucket(SCRATCH)
        .key("kept")
        .copy_source(format!("{BUCKET}/m/put.csv"))
        .send()
        .await
        .unwrap();
    let kept =
        s.s3.head_object()
            .bucket(SCRATCH)
            .key("kept")
            .send()
            .await
            .unwrap();
    assert_eq!(kept.content_type(), Some("text/csv"));
    assert_eq!(kept.metadata().unwrap()["stage"], "2");
    s.s3.copy_object()
        .bucket(SCRATCH)
        .key("replaced")
        .copy_source(format!("{BUCKET}/m/put.csv"))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
        .content_type("text/plain")
        .metadata("stage", "3")
        .send()
        .await
        .unwrap();
    let replaced =
        s.s3.head_object()
            .bucket(SCRATCH)
            .key("replaced")
            .send()
            .await
            .unwrap();
    assert_eq!(replaced.content_type(), Some("text/plain"));
    assert_eq!(replaced.metadata().unwrap().len(), 1);
    assert_eq!(replaced.metadata().unwrap()["stage"], "3");
    assert_eq!(replaced.cache_control(), None);

    // More than the limit: refused, nothing stored.
    let err =
        s.s3.put_object()
            .bucket(BUCKET)
            .key("m/too-much")
            .metadata("big", "v".repeat(4000))
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "MetadataTooLarge");
    assert!(s.client.head(BUCKET, "m/too-much").await.is_err());

    // Content-MD5 is checked: a wrong one stores nothing.
    let md5 = |body: &'static [u8], md5: &str| {
        s.s3.put_object()
            .bucket(BUCKET)
            .key("m/md5")
            .content_md5(md5)
            .body(ByteStream::from_static(body))
            .send()
    };
    let err = md5(b"hello world", "AAAAAAAAAAAAAAAAAAAAAA==")
        .await
        .unwrap_err();
    assert_eq!(code(&err), "BadDigest");
    assert!(s.client.head(BUCKET, "m/md5").await.is_err());
    md5(b"hello world", "XrY7u+Ae7tCTyyK7j1rNww==")
        .await
        .unwrap();
    assert_eq!(s.client.get(BUCKET, "m/md5").await.unwrap(), b"hello world");
    drop(s.cluster);
}

/// Lock files and table commits (Delta Lake, Iceberg) rely on conditional writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_hold_or_store_nothing() {
    let s = setup(|_| {}).await;
    let put = |key: &'static str, body: &'static [u8]| {
        s.s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from_static(body))
    };
    let first = put("c/lock", b"one")
        .if_none_match("*")
        .send()
        .await
        .unwrap();
    let err = put("c/lock", b"two")
        .if_none_match("*")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "PreconditionFailed");
    let tag = first.e_tag().unwrap().to_owned();
    let err = put("c/lock", b"two")
        .if_none_match(&tag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "PreconditionFailed");
    let err = put("c/lock", b"two")
        .if_match("\"0123456789abcdef\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "PreconditionFailed", "another version");
    let err = put("c/lock", b"two")
        .if_match("\"ABCORZ\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "PreconditionFailed", "no version at all");
    assert_eq!(s.client.get(BUCKET, "c/lock").await.unwrap(), b"one");
    let second = put("c/lock", b"two").if_match(&tag).send().await.unwrap();
    assert_eq!(s.client.get(BUCKET, "c/lock").await.unwrap(), b"two");
    let err = put("c/lock", b"three")
        .if_match(&tag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "PreconditionFailed",
        "the first version is gone"
    );
    put("c/lock", b"three").if_match("*").send().await.unwrap();
    let tag = second.e_tag().unwrap().to_owned();
    put("c/lock", b"two")
        .if_none_match(&tag)
        .send()
        .await
        .unwrap();
    // A missing key: If-Match is NoSuchKey, If-None-Match an ETag of nothing passes.
    let err = put("c/none", b"x").if_match("*").send().await.unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");
    let err = put("c/none", b"x").if_match(&tag).send().await.unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");
    put("c/none", b"x")
        .if_none_match(&tag)
        .send()
        .await
        .unwrap();

    // Racing creators: exactly one wins, and the key holds the winner's bytes.
    let racers: Vec<_> = (0..8u8)
        .map(|i| {
            let s3 = s.s3.clone();
            tokio::spawn(async move {
                let body = vec![i; 100_000];
                let answer = s3
                    .put_object()
                    .bucket(BUCKET)
                    .key("c/race")
                    .if_none_match("*")
                    .body(ByteStream::from(body))
                    .send()
                    .await;
                (i, answer.map_err(|e| code(&e)))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let (i, answer) = racer.await.unwrap();
        match answer {
            Ok(_) => winners.push(i),
            Err(code) => assert!(
                code == "PreconditionFailed" || code == "ConditionalRequestConflict",
                "{code}"
            ),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        s.client.get(BUCKET, "c/race").await.unwrap(),
        vec![winners[0]; 100_000]
    );

    // CompleteMultipartUpload: refused when the key exists, the upload kept to retry.
    let upload =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key("c/lock")
            .send()
            .await
            .unwrap();
    let id = upload.upload_id().unwrap();
    let parts = CompletedMultipartUpload::builder()
        .parts(one_part(&s.s3, "c/lock", id, b"multi").await)
        .build();
    let err =
        s.s3.complete_multipart_upload()
            .bucket(BUCKET)
            .key("c/lock")
            .upload_id(id)
            .if_none_match("*")
            .multipart_upload(parts.clone())
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "PreconditionFailed");
    assert_eq!(s.client.get(BUCKET, "c/lock").await.unwrap(), b"two");
    s.s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key("c/lock")
        .upload_id(id)
        .multipart_upload(parts)
        .send()
        .await
        .unwrap();
    assert_eq!(s.client.get(BUCKET, "c/lock").await.unwrap(), b"multi");
    // A conditional delete is refused, not done unconditionally.
    let err =
        s.s3.delete_object()
            .bucket(BUCKET)
            .key("c/lock")
            .if_match(&tag)
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "NotImplemented");
    assert!(s.client.head(BUCKET, "c/lock").await.is_ok());
    drop(s.cluster);
}

/// Cleaners list versions and delete by version id, whatever the bucket's versioning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_versions_list_and_delete_as_an_unversioned_bucket() {
    let s = setup(|_| {}).await;
    let keys = ["v/a", "v/b", "v/c/1", "v/c/2", "v/d"];
    for key in keys {
        s.s3.put_object()
            .bucket(SCRATCH)
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap();
    }
    let (mut listed, mut prefixes) = (Vec::new(), Vec::new());
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page =
            s.s3.list_object_versions()
                .bucket(SCRATCH)
                .prefix("v/")
                .delimiter("/")
                .max_keys(2)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .unwrap();
        assert!(page.versions().len() + page.common_prefixes().len() <= 2);
        for version in page.versions() {
            assert_eq!(version.version_id(), Some("null"));
            assert_eq!(version.is_latest(), Some(true));
            assert_eq!(version.size(), Some(1));
            listed.push(version.key().unwrap().to_owned());
        }
        prefixes.extend(
            page.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
        assert!(key_marker.is_some());
    }
    assert_eq!(listed, ["v/a", "v/b", "v/d"]);
    assert_eq!(prefixes, ["v/c/"]);

    // Version "null" is the one version; any other id is refused, not ignored.
    let object = |key: &str, version: &str| {
        ObjectIdentifier::builder()
            .key(key)
            .version_id(version)
            .build()
            .unwrap()
    };
    let deleted =
        s.s3.delete_objects()
            .bucket(SCRATCH)
            .delete(
                Delete::builder()
                    .objects(object("v/a", "null"))
                    .objects(object("v/b", "3HL4kqtJlcpXroDTDmJ"))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    assert_eq!(deleted.deleted().len(), 1);
    assert_eq!(deleted.errors().len(), 1);
    assert_eq!(deleted.errors()[0].key(), Some("v/b"));
    assert_eq!(deleted.errors()[0].code(), Some("InvalidArgument"));
    assert!(s.client.head(SCRATCH, "v/a").await.is_err());
    // A deleted key left no delete marker, and HEAD says so as S3 does.
    let err =
        s.s3.head_object()
            .bucket(SCRATCH)
            .key("v/a")
            .send()
            .await
            .unwrap_err();
    let marker = err
        .raw_response()
        .and_then(|r| r.headers().get("x-amz-delete-marker"));
    assert_eq!(marker, Some("false"));
    assert!(err.into_service_error().is_not_found());
    s.client.head(SCRATCH, "v/b").await.unwrap();
    let err =
        s.s3.get_object()
            .bucket(SCRATCH)
            .key("v/b")
            .version_id("other")
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");
    drop(s.cluster);
}

/// Every key and common prefix of the bucket, sorted, listed in pages of `max_keys`,
/// checking each page's count and truncation flag.
async fn list_all(s3: &S3Client, delimiter: Option<&str>, max_keys: i32) -> Vec<String> {
    list_bucket(s3, BUCKET, delimiter, max_keys).await
}

async fn list_bucket(
    s3: &S3Client,
    bucket: &str,
    delimiter: Option<&str>,
    max_keys: i32,
) -> Vec<String> {
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_delimiter(delimiter.map(str::to_owned))
            .max_keys(max_keys)
            .set_continuation_token(token.take())
            .send()
            .await
            .unwrap();
        assert!(page.key_count().unwrap() <= max_keys);
        listed.extend(
            page.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        listed.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
        match page.next_continuation_token() {
            Some(next) => {
                assert_eq!(page.is_truncated(), Some(true));
                token = Some(next.to_owned());
            }
            None => break,
        }
    }
    listed.sort();
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_and_fold_prefixes_as_s3_does() {
    let s = setup(|_| {}).await;
    // 3 top-level keys, 2 "directories" of 6 and 5 keys, one nested.
    let mut keys: Vec<String> = ["a", "m", "z"].iter().map(|k| k.to_string()).collect();
    keys.extend((0..6).map(|i| format!("logs/{i:02}")));
    keys.extend((0..4).map(|i| format!("data/part-{i}")));
    keys.push("data/sub/deep".into());
    for (i, key) in keys.iter().enumerate() {
        s.client
            .put(BUCKET, key, &bytes(10 + i, i as u8))
            .await
            .unwrap();
    }
    keys.sort();
    // An upload in progress keeps its parts under reserved keys no listing shows.
    s.s3.create_multipart_upload()
        .bucket(BUCKET)
        .key("pending")
        .send()
        .await
        .unwrap();

    // Every key exactly once, in order, over pages of 4.
    assert_eq!(list_all(&s.s3, None, 4).await, keys);
    // With a delimiter: prefixes fold, and count toward max-keys.
    assert_eq!(
        list_all(&s.s3, Some("/"), 2).await,
        ["a", "data/", "logs/", "m", "z"]
    );

    // Under a prefix, one level down.
    let page =
        s.s3.list_objects_v2()
            .bucket(BUCKET)
            .prefix("data/")
            .delimiter("/")
            .send()
            .await
            .unwrap();
    let contents: Vec<&str> = page.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(
        contents,
        ["data/part-0", "data/part-1", "data/part-2", "data/part-3"]
    );
    let prefixes: Vec<&str> = page
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap())
        .collect();
    assert_eq!(prefixes, ["data/sub/"]);
    assert_eq!(page.contents()[0].size(), Some(10 + 9));
    assert_eq!(page.is_truncated(), Some(false));

    // start-after, and ListObjects (V1) with its markers.
    let page =
        s.s3.list_objects_v2()
            .bucket(BUCKET)
            .start_after("logs/03")
            .send()
            .await
            .unwrap();
    let after: Vec<&str> = page.contents().iter().map(|o| o.key().unwrap()).collect();
    assert_eq!(after, ["logs/04", "logs/05", "m", "z"]);
    let mut v1 = Vec::new();
    let mut marker = None;
    loop {
        let page =
            s.s3.list_objects()
                .bucket(BUCKET)
                .delimiter("/")
                .max_keys(1)
                .set_marker(marker.clone())
                .send()
                .await
                .unwrap();
        v1.extend(
            page.common_prefixes()
                .iter()
                .map(|p| p.prefix().unwrap().to_owned()),
        );
        v1.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
        match page.next_marker() {
            Some(next) if page.is_truncated() == Some(true) => marker = Some(next.to_owned()),
            _ => break,
        }
    }
    assert_eq!(v1, ["a", "data/", "logs/", "m", "z"]);
    let err =
        s.s3.list_objects_v2()
            .bucket(BUCKET)
            .continuation_token("not-a-token")
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");
}

/// Two PUTs of one key at once both succeed and one version wins whole, as in S3: a
/// large put begun first is ordered first, so the small one begun after it commits a
/// newer version, and the large one is superseded on arrival. Its receipt
/// must still carry the CRC of its bytes (it once said 0, and the gateway answered 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_one_key_both_succeed_and_the_later_wins() {
    let s = setup(|_| {}).await;
    for round in 0..3u8 {
        let (large, small) = (bytes(12 << 20, round), bytes(1000, round + 100));
        let put = |body: Vec<u8>| {
            s.s3.put_object()
                .bucket(SCRATCH)
                .key("contended")
                .body(ByteStream::from(body))
                .send()
        };
        let first = put(large.clone());
        let second = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            put(small.clone()).await
        };
        let (first, second) = tokio::join!(first, second);
        let (first, second) = (first.unwrap(), second.unwrap());
        // ETags are MD5s, which say nothing of order: the key holds one of the two,
        // whole, under its own ETag.
        let got_tag =
            s.s3.head_object()
                .bucket(SCRATCH)
                .key("contended")
                .send()
                .await
                .unwrap()
                .e_tag()
                .unwrap()
                .to_owned();
        let newer = got_tag.as_str();
        assert!(newer == first.e_tag().unwrap() || newer == second.e_tag().unwrap());
        let want = if newer == first.e_tag().unwrap() {
            &large
        } else {
            &small
        };
        let got =
            s.s3.get_object()
                .bucket(SCRATCH)
                .key("contended")
                .send()
                .await
                .unwrap();
        assert_eq!(got.e_tag(), Some(newer), "round {round}");
        assert!(
            body(got).await == *want,
            "round {round}: the newer version's bytes"
        );
    }
}

/// Encryption fdw does not do is refused with S3's NotImplemented before anything is
/// stored, never accepted and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_headers_are_refused_not_ignored() {
    use aws_sdk_s3::types::ServerSideEncryption;
    let s = setup(|_| {}).await;
    let put = || {
        s.s3.put_object()
            .bucket(BUCKET)
            .key("secret")
            .body(ByteStream::from_static(b"plain"))
    };
    let refused = [
        put().server_side_encryption(ServerSideEncryption::Aes256),
        put()
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id("key-1"),
        put()
            .sse_customer_algorithm("AES256")
            .sse_customer_key("MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=")
            .sse_customer_key_md5("ZGVhZGJlZWZkZWFkYmVlZg=="),
    ];
    for request in refused {
        let err = request.send().await.unwrap_err();
        assert_eq!(code(&err), "NotImplemented");
    }
    let err =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key("secret")
            .server_side_encryption(ServerSideEncryption::Aes256)
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "NotImplemented");
    let err =
        s.s3.head_object()
            .bucket(BUCKET)
            .key("secret")
            .send()
            .await
            .unwrap_err();
    assert!(err.into_service_error().is_not_found(), "nothing stored");
}

/// GetObject and HeadObject by part number: each part of a completed upload is its
/// bytes, with the object's ETag and its count of parts; the sizes go with the object
/// to the under-store. An object of one PUT is one part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_read_by_part_number() {
    let s = setup(|_| {}).await;
    let sizes = [5 << 20, 5 << 20, (1 << 20) + 3];
    let data = bytes(sizes.iter().sum(), 41);
    let upload =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key("parts")
            .send()
            .await
            .unwrap();
    let id = upload.upload_id().unwrap();
    let mut pieces = Vec::new();
    let mut at = 0;
    for size in sizes {
        pieces.push(data[at..at + size].to_vec());
        at += size;
    }
    let named = upload_parts(&s.s3, "parts", id, &pieces).await;
    let done = complete(&s.s3, "parts", id, named).await.unwrap();
    let mut at = 0;
    for (n, size) in sizes.iter().enumerate() {
        let number = n as i32 + 1;
        let get =
            s.s3.get_object()
                .bucket(BUCKET)
                .key("parts")
                .part_number(number)
                .send()
                .await
                .unwrap();
        assert_eq!(get.parts_count(), Some(3));
        assert_eq!(get.e_tag(), done.e_tag());
        assert_eq!(get.content_length(), Some(*size as i64));
        assert_eq!(body(get).await, data[at..at + size], "part {number}");
        let head =
            s.s3.head_object()
                .bucket(BUCKET)
                .key("parts")
                .part_number(number)
                .send()
                .await
                .unwrap();
        assert_eq!(
            (head.parts_count(), head.content_length()),
            (Some(3), Some(*size as i64))
        );
        at += size;
    }
    // Each part's checksum (fdw's CRC32 of it) with checksum mode, and the parts listed
    // by GetObjectAttributes, in pages.
    use aws_sdk_s3::types::{ChecksumMode, ObjectAttributes};
    let crc_of = |range: std::ops::Range<usize>| crc32_header(crc32fast::hash(&data[range]));
    let second =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("parts")
            .part_number(2)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
    assert_eq!(
        second.checksum_crc32(),
        Some(crc_of(5 << 20..10 << 20).as_str())
    );
    let attributes = |max: i32, marker: Option<i32>| {
        s.s3.get_object_attributes()
            .bucket(BUCKET)
            .key("parts")
            .object_attributes(ObjectAttributes::ObjectParts)
            .object_attributes(ObjectAttributes::ObjectSize)
            .object_attributes(ObjectAttributes::Checksum)
            .max_parts(max)
            .set_part_number_marker(marker.map(|m| m.to_string()))
            .send()
    };
    let page = attributes(2, None).await.unwrap();
    assert_eq!(page.object_size(), Some(data.len() as i64));
    let whole = page.checksum().and_then(|c| c.checksum_crc32());
    assert_eq!(whole, Some(crc_of(0..data.len()).as_str()));
    let listed = page.object_parts().unwrap();
    assert_eq!(listed.total_parts_count(), Some(3));
    assert_eq!(listed.is_truncated(), Some(true));
    let first: Vec<(Option<i32>, Option<i64>)> = listed
        .parts()
        .iter()
        .map(|p| (p.part_number(), p.size()))
        .collect();
    assert_eq!(first, [(Some(1), Some(5 << 20)), (Some(2), Some(5 << 20))]);
    let next = listed.next_part_number_marker().map(|m| m.parse().unwrap());
    let page = attributes(2, next).await.unwrap();
    let last = &page.object_parts().unwrap().parts()[0];
    assert_eq!(
        (last.part_number(), last.size()),
        (Some(3), Some(sizes[2] as i64))
    );
    assert_eq!(
        last.checksum_crc32(),
        Some(crc_of(10 << 20..data.len()).as_str())
    );
    assert_eq!(page.object_parts().unwrap().is_truncated(), Some(false));

    let get_part = |key: &'static str, number: i32| {
        s.s3.get_object()
            .bucket(BUCKET)
            .key(key)
            .part_number(number)
            .send()
    };
    assert_eq!(
        code(&get_part("parts", 4).await.unwrap_err()),
        "InvalidPart"
    );
    let err =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("parts")
            .part_number(1)
            .range("bytes=0-1");
    assert_eq!(code(&err.send().await.unwrap_err()), "InvalidRequest");
    // One PUT, one part.
    s.s3.put_object()
        .bucket(BUCKET)
        .key("single")
        .body(ByteStream::from_static(b"body"))
        .send()
        .await
        .unwrap();
    let whole = get_part("single", 1).await.unwrap();
    assert_eq!(whole.parts_count(), None);
    assert_eq!(body(whole).await, b"body");
    assert_eq!(
        code(&get_part("single", 2).await.unwrap_err()),
        "InvalidPart"
    );
    // The sizes are kept with the object in the under-store (as fdw's own metadata).
    eventually("the upload reaches the under-store", async || {
        s.lake.head("parts").await.unwrap().is_some()
    })
    .await;
    let stored = s.lake.head("parts").await.unwrap().unwrap();
    let record = stored
        .headers
        .iter()
        .find(|(name, _)| name == "x-fdw-parts");
    assert_eq!(record.map(|(_, v)| v.as_str()), Some("5242880*2,1048579"));
}

/// A SHA-256 a writer sends is checked, kept and returned when asked for; a multipart
/// upload started with SHA-256 completes into S3's composite checksum, which a
/// repeated completion answers again. (Values from the Ceph suite: 1024 bytes of `A`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_are_checked_kept_and_combined() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
    let s = setup(|_| {}).await;
    let body = vec![b'A'; 1024];
    let sha256 = "arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=";
    let put = |key: &'static str, checksum: &'static str| {
        s.s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .checksum_sha256(checksum)
            .body(ByteStream::from(body.clone()))
            .send()
    };
    let done = put("summed", sha256).await.unwrap();
    assert_eq!(done.checksum_sha256(), Some(sha256));
    let head = |key: &'static str, mode: Option<ChecksumMode>| {
        s.s3.head_object()
            .bucket(BUCKET)
            .key(key)
            .set_checksum_mode(mode)
            .send()
    };
    assert_eq!(head("summed", None).await.unwrap().checksum_sha256(), None);
    let asked = head("summed", Some(ChecksumMode::Enabled)).await.unwrap();
    assert_eq!(asked.checksum_sha256(), Some(sha256));
    assert_eq!(
        asked.checksum_type().map(|t| t.as_str()),
        Some("FULL_OBJECT")
    );
    let wrong = "275VF5loJr1YYawit0XSHREhkFXYkkPKGuoK0x9VKxI=";
    assert_eq!(
        code(&put("wrongly-summed", wrong).await.unwrap_err()),
        "BadDigest"
    );
    assert!(
        head("wrongly-summed", None).await.is_err(),
        "nothing stored"
    );

    let upload = async |key: &str| {
        let created =
            s.s3.create_multipart_upload()
                .bucket(BUCKET)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send()
                .await
                .unwrap();
        assert_eq!(
            created.checksum_type().map(|t| t.as_str()),
            Some("COMPOSITE")
        );
        let id = created.upload_id().unwrap().to_owned();
        let part =
            s.s3.upload_part()
                .bucket(BUCKET)
                .key(key)
                .upload_id(&id)
                .part_number(1)
                .checksum_sha256(sha256)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .unwrap();
        assert_eq!(part.checksum_sha256(), Some(sha256));
        (id, part.e_tag().unwrap().to_owned())
    };
    let finish = |key: &str, id: &str, part: CompletedPart, whole: &str| {
        s.s3.complete_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .upload_id(id)
            .checksum_sha256(whole)
            .multipart_upload(CompletedMultipartUpload::builder().parts(part).build())
            .send()
    };
    let composite = "Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1";
    let (id, tag) = upload("multi").await;
    let named = |with_sum: bool| {
        let part = CompletedPart::builder().part_number(1).e_tag(&tag);
        match with_sum {
            true => part.checksum_sha256(sha256).build(),
            false => part.build(),
        }
    };
    // A wrong composite, or a part named without its checksum, is refused; the upload
    // stays, and completes with the right one.
    let err = finish("multi", &id, named(true), "bad").await.unwrap_err();
    assert_eq!(code(&err), "BadDigest");
    let err = finish("multi", &id, named(false), composite)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "BadDigest");
    let done = finish("multi", &id, named(true), composite).await.unwrap();
    assert_eq!(done.checksum_sha256(), Some(composite));
    let again = finish("multi", &id, named(true), composite).await.unwrap();
    assert_eq!(
        (again.e_tag(), again.checksum_sha256()),
        (done.e_tag(), Some(composite))
    );
    let asked = head("multi", Some(ChecksumMode::Enabled)).await.unwrap();
    assert_eq!(asked.checksum_sha256(), Some(composite));
    assert_eq!(asked.checksum_type().map(|t| t.as_str()), Some("COMPOSITE"));
    assert_eq!(
        asked.checksum_crc32(),
        None,
        "one checksum, of the type said"
    );

    // CRC32C asked as FULL_OBJECT: the parts' CRCs combine into the CRC of all the bytes.
    use base64::Engine as _;
    use s3s::crypto::Checksum as _;
    let crc32c = |data: &[u8]| {
        base64::engine::general_purpose::STANDARD.encode(s3s::crypto::Crc32c::checksum(data))
    };
    let pieces = [vec![b'A'; 5 << 20], vec![b'B'; 1000]];
    let created =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key("full")
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .checksum_type(aws_sdk_s3::types::ChecksumType::FullObject)
            .send()
            .await
            .unwrap();
    let id = created.upload_id().unwrap();
    let mut named = Vec::new();
    for (n, piece) in pieces.iter().enumerate() {
        let number = n as i32 + 1;
        let part =
            s.s3.upload_part()
                .bucket(BUCKET)
                .key("full")
                .upload_id(id)
                .part_number(number)
                .checksum_crc32_c(crc32c(piece))
                .body(ByteStream::from(piece.clone()))
                .send()
                .await
                .unwrap();
        let part = CompletedPart::builder()
            .part_number(number)
            .e_tag(part.e_tag().unwrap())
            .checksum_crc32_c(crc32c(piece));
        named.push(part.build());
    }
    let whole = crc32c(&pieces.concat());
    let done =
        s.s3.complete_multipart_upload()
            .bucket(BUCKET)
            .key("full")
            .upload_id(id)
            .checksum_crc32_c(&whole)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(named))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    assert_eq!(done.checksum_crc32_c(), Some(whole.as_str()));
    let asked = head("full", Some(ChecksumMode::Enabled)).await.unwrap();
    assert_eq!(asked.checksum_crc32_c(), Some(whole.as_str()));
    assert_eq!(
        asked.checksum_type().map(|t| t.as_str()),
        Some("FULL_OBJECT")
    );
}

/// A key the bucket's under-store cannot hold (S3 counts the store's prefix, `fdw/`, in
/// its 1024 bytes) is refused at the door with S3's error, for a put and a multipart
/// completion alike; in a memory-only bucket the same key is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_under_store_cannot_hold_are_refused_at_the_door() {
    let s = setup(|_| {}).await;
    // Names of 200 bytes: s3s-fs, the under-store here, keeps each as a file name.
    let key_of = |len: usize| {
        let mut key: String = (0..len)
            .map(|i| if i % 200 == 199 { '/' } else { 'k' })
            .collect();
        key.replace_range(len - 1.., "z");
        key
    };
    let (fits, too_long) = (key_of(1020), key_of(1021));
    let put = |bucket: &str, key: &str| {
        s.s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
    };
    put(BUCKET, &fits).await.unwrap();
    let err = put(BUCKET, &too_long).await.unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");
    assert!(format!("{err:?}").contains("S3_MAX_KEY_BYTES"), "{err:?}");
    let upload =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key(&too_long)
            .send()
            .await
            .unwrap();
    let id = upload.upload_id().unwrap();
    let part = one_part(&s.s3, &too_long, id, b"part").await;
    let err = complete(&s.s3, &too_long, id, vec![part])
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidArgument");
    put(SCRATCH, &too_long).await.unwrap();
    eventually("the key that fits reaches the under-store", async || {
        s.lake.head(&fits).await.unwrap().is_some()
    })
    .await;
    let err =
        s.s3.head_object()
            .bucket(BUCKET)
            .key(&too_long)
            .send()
            .await
            .unwrap_err();
    assert!(err.into_service_error().is_not_found(), "nothing stored");
}

/// Keys of `len` bytes: `dirs` "directories" of names that differ only at their end,
/// and a few at the top level.
fn long_keys(count: usize, len: usize, dirs: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let head = if i % 10 == 9 {
                format!("top-{i:07}-")
            } else {
                format!("dir-{:03}/", i % dirs)
            };
            let tail = format!("-{i:07}");
            format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
        })
        .collect()
}

/// Past the size of any one reply between nodes (1000-byte keys, R=2 of 3, so every
/// member's page ends at a different key), with deletes and overwrites in between: every
/// live key listed exactly once, in order, in V2 and V1, with and without a delimiter.
/// `FDW_LISTING_KEYS=100000` runs it at the size of the target and prints the
/// listing's rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_listings_are_complete_past_any_reply_limit() {
    use futures_util::StreamExt;
    let count: usize = std::env::var("FDW_LISTING_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let s = setup(|_| {}).await;
    let keys = long_keys(count, 1000, 7);
    let cache = Replication::new(WriteType::MustCache, 2, 2).unwrap();
    let client = &s.client;
    // Empty objects: 100 000 of them take no pool chunks, which MUST_CACHE never frees.
    let put = |key: String, _version: usize| async move {
        client.put_with(SCRATCH, &key, b"", cache).await.unwrap();
    };
    futures_util::stream::iter(keys.iter().enumerate())
        .for_each_concurrent(64, |(i, key)| put(key.clone(), i))
        .await;
    // Every 13th key deleted, every 17th written again (a newer version).
    let mut live = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if i.is_multiple_of(13) {
            client.delete_with(SCRATCH, key, cache).await.unwrap();
        } else {
            if i.is_multiple_of(17) {
                put(key.clone(), i + 1).await;
            }
            live.push(key.clone());
        }
    }
    live.sort();

    let started = tokio::time::Instant::now();
    let listed = list_bucket(&s.s3, SCRATCH, None, 1000).await;
    let elapsed = started.elapsed();
    assert_eq!(listed.len(), live.len());
    assert!(listed == live, "V2 listing differs from the keys written");
    eprintln!(
        "listed {} keys of 1000 bytes through the gateway in {elapsed:?}: {:.0} keys/s",
        listed.len(),
        listed.len() as f64 / elapsed.as_secs_f64()
    );

    let mut folded: Vec<String> = live
        .iter()
        .map(|k| match k.find('/') {
            Some(at) => k[..=at].to_owned(),
            None => k.clone(),
        })
        .collect();
    folded.dedup();
    folded.sort();
    assert_eq!(list_bucket(&s.s3, SCRATCH, Some("/"), 5).await, folded);

    // V1 with markers, under a prefix, pages of 250.
    let under: Vec<String> = live
        .iter()
        .filter(|k| k.starts_with("dir-003/"))
        .cloned()
        .collect();
    let mut v1 = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page =
            s.s3.list_objects()
                .bucket(SCRATCH)
                .prefix("dir-003/")
                .max_keys(250)
                .set_marker(marker.take())
                .send()
                .await
                .unwrap();
        let keys: Vec<String> = page
            .contents()
            .iter()
            .map(|o| o.key().unwrap().to_owned())
            .collect();
        assert!(keys.len() <= 250);
        let truncated = page.is_truncated() == Some(true);
        if truncated {
            assert_eq!(keys.len(), 250, "a truncated V1 page is full");
        }
        marker = keys.last().cloned();
        v1.extend(keys);
        if !truncated {
            break;
        }
    }
    assert_eq!(v1, under);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_complete_into_one_checked_object() {
    let s = setup(|_| {}).await;
    let sizes = [5 << 20, (5 << 20) + 3, 777_777];
    let parts: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| bytes(n, 10 + i as u8))
        .collect();
    let whole: Vec<u8> = parts.concat();

    let upload =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key("big/object.parquet")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .unwrap();
    let id = upload.upload_id().unwrap().to_owned();
    let mut completed = Vec::new();
    // Out of order, as parallel uploaders send them.
    for number in [2, 1, 3] {
        let data = &parts[number - 1];
        let part =
            s.s3.upload_part()
                .bucket(BUCKET)
                .key("big/object.parquet")
                .upload_id(&id)
                .part_number(number as i32)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(data.clone()))
                .send()
                .await
                .unwrap();
        assert_eq!(
            part.checksum_crc32(),
            Some(crc32_header(crc32fast::hash(data)).as_str())
        );
        let md5 = fdw_net::wire::Digest::of_bytes(data).etag();
        assert_eq!(part.e_tag(), Some(format!("\"{md5}\"").as_str()));
        completed.push(
            CompletedPart::builder()
                .part_number(number as i32)
                .e_tag(part.e_tag().unwrap())
                .checksum_crc32(part.checksum_crc32().unwrap())
                .build(),
        );
    }
    completed.sort_by_key(|p| p.part_number());
    let listed =
        s.s3.list_parts()
            .bucket(BUCKET)
            .key("big/object.parquet")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
    let listed: Vec<(i32, i64)> = listed
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap(), p.size().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (1, sizes[0] as i64),
            (2, sizes[1] as i64),
            (3, sizes[2] as i64)
        ]
    );
    // Pages of parts: max-parts and the marker, 0 for a look with no parts, and negative
    // numbers refused as S3 refuses them.
    let list_page = |max: i32, marker: Option<&str>| {
        s.s3.list_parts()
            .bucket(BUCKET)
            .key("big/object.parquet")
            .upload_id(&id)
            .max_parts(max)
            .set_part_number_marker(marker.map(str::to_owned))
            .send()
    };
    let first = list_page(2, None).await.unwrap();
    let numbers = |page: &aws_sdk_s3::operation::list_parts::ListPartsOutput| -> Vec<i32> {
        page.parts()
            .iter()
            .map(|p| p.part_number().unwrap())
            .collect()
    };
    assert_eq!(numbers(&first), [1, 2]);
    assert_eq!(first.is_truncated(), Some(true));
    assert_eq!(first.next_part_number_marker(), Some("2"));
    let rest = list_page(2, Some("2")).await.unwrap();
    assert_eq!(numbers(&rest), [3]);
    let none = list_page(0, Some("1")).await.unwrap();
    assert!(none.parts().is_empty());
    assert_eq!(none.is_truncated(), Some(true), "parts 2 and 3 remain");
    assert_eq!(none.next_part_number_marker(), Some("1"));
    for (max, marker) in [(-1, None), (2, Some("-1"))] {
        let err = list_page(max, marker).await.unwrap_err();
        assert_eq!(
            code(&err),
            "InvalidArgument",
            "max {max}, marker {marker:?}"
        );
    }

    // A part named with another part's ETag is refused, and the upload stays open.
    let mut wrong = completed.clone();
    wrong[0] = CompletedPart::builder()
        .part_number(1)
        .e_tag(completed[1].e_tag().unwrap())
        .build();
    let err = complete(&s.s3, "big/object.parquet", &id, wrong)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidPart");

    let done = complete(&s.s3, "big/object.parquet", &id, completed)
        .await
        .unwrap();
    assert_eq!(
        done.checksum_crc32(),
        Some(crc32_header(crc32fast::hash(&whole)).as_str()),
        "the full object's CRC32"
    );
    let got =
        s.s3.get_object()
            .bucket(BUCKET)
            .key("big/object.parquet")
            .send()
            .await
            .unwrap();
    assert_eq!(got.e_tag(), done.e_tag());
    // S3's multipart ETag: the MD5 of the parts' MD5s, and their count.
    let md5s = parts.iter().map(|p| fdw_net::wire::Digest::of_bytes(p));
    let want = fdw_net::wire::Digest::of_parts(md5s).etag();
    assert!(want.ends_with("-3"));
    assert_eq!(done.e_tag(), Some(format!("\"{want}\"").as_str()));
    assert_eq!(body(got).await, whole);
    // One object persisted, the staging parts gone from every listing and from memory.
    let info = s.client.head(BUCKET, "big/object.parquet").await.unwrap();
    s.client
        .wait_persisted(
            BUCKET,
            "big/object.parquet",
            info.version,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        s.lake.get("big/object.parquet", None).await.unwrap(),
        whole[..]
    );
    let left = s
        .client
        .list(BUCKET, ".fdw-multipart/", None, 100)
        .await
        .unwrap();
    assert!(left.entries.is_empty(), "{:?}", left.entries);
    let err =
        s.s3.upload_part()
            .bucket(BUCKET)
            .key("big/object.parquet")
            .upload_id(&id)
            .part_number(4)
            .body(ByteStream::from(vec![0; 10]))
            .send()
            .await
            .unwrap_err();
    assert_eq!(
        code(&err),
        "NoSuchUpload",
        "a completed upload takes no parts"
    );

    // Too-small parts are refused, as S3 refuses them; an aborted upload is gone.
    let small =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key("small")
            .send()
            .await
            .unwrap();
    let small_id = small.upload_id().unwrap();
    let tags = upload_parts(&s.s3, "small", small_id, &[vec![1; 1000], vec![2; 1000]]).await;
    let err = complete(&s.s3, "small", small_id, tags).await.unwrap_err();
    assert_eq!(code(&err), "EntityTooSmall");
    s.s3.abort_multipart_upload()
        .bucket(BUCKET)
        .key("small")
        .upload_id(small_id)
        .send()
        .await
        .unwrap();
    let err =
        s.s3.list_parts()
            .bucket(BUCKET)
            .key("small")
            .upload_id(small_id)
            .send()
            .await
            .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
    let left = s
        .client
        .list(BUCKET, ".fdw-multipart/", None, 100)
        .await
        .unwrap();
    assert!(left.entries.is_empty(), "{:?}", left.entries);
    let err =
        s.s3.put_object()
            .bucket(BUCKET)
            .key(".fdw-multipart/forged")
            .body(ByteStream::from(vec![1]))
            .send()
            .await
            .unwrap_err();
    assert_eq!(
        code(&err),
        "InvalidArgument",
        "the staging keys are the gateway's"
    );
}

/// A second gateway to the same cluster that serves unsigned requests.
async fn anonymous_gateway(
    cluster: &LocalCluster,
    configure: impl FnOnce(&mut GatewayConfig),
) -> Gateway {
    let mut config = GatewayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        Vec::new(),
        Replication::new(WriteType::AsyncThrough, 2, 2).unwrap(),
    );
    config.anonymous = true;
    // The cluster's buckets, as every gateway of it is configured.
    config.buckets.insert(BUCKET.into(), config.default);
    configure(&mut config);
    Gateway::start(config, cluster.client("anonymous").await.unwrap())
        .await
        .unwrap()
}

/// Uploads `pieces` as parts 1, 2, ... of upload `id` of `BUCKET/key`; the parts as a
/// completion names them.
async fn upload_parts(
    s3: &S3Client,
    key: &str,
    id: &str,
    pieces: &[Vec<u8>],
) -> Vec<CompletedPart> {
    let mut named = Vec::new();
    for (n, piece) in pieces.iter().enumerate() {
        let number = n as i32 + 1;
        let part = s3
            .upload_part()
            .bucket(BUCKET)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(piece.clone()))
            .send()
            .await
            .unwrap();
        named.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    named
}

/// Completes an upload to `BUCKET/key` with `parts`.
async fn complete(
    s3: &S3Client,
    key: &str,
    upload_id: &str,
    parts: Vec<CompletedPart>,
) -> Result<
    aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput,
    aws_sdk_s3::error::SdkError<
        aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadError,
    >,
> {
    s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
}

/// Sends one raw, unsigned HTTP request and returns the status line and body.
async fn unsigned(addr: SocketAddr, request: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_known_keys_get_in_and_hosts_name_buckets() {
    let s = setup(|c| c.domains = vec!["s3.fdw.test".into()]).await;
    s.client.put(BUCKET, "k", b"hello").await.unwrap();

    let wrong_secret = s3_client(s.gateway.addr(), ACCESS, "not-the-secret");
    let err = wrong_secret
        .get_object()
        .bucket(BUCKET)
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "SignatureDoesNotMatch");
    let unknown = s3_client(s.gateway.addr(), "NOBODY", SECRET);
    let err = unknown
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidAccessKeyId");
    let (status, body) = unsigned(
        s.gateway.addr(),
        &format!("GET /{BUCKET}/k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(status.contains("403"), "{status}");
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");

    // Virtual-hosted style: the bucket is in the host name.
    let (status, body) = unsigned(
        s.gateway.addr(),
        &format!("GET /k HTTP/1.1\r\nHost: {BUCKET}.s3.fdw.test\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(status.contains("403"), "still signed only: {status} {body}");

    // A gateway that allows anonymous access serves both addressing styles unsigned.
    let open = anonymous_gateway(&s.cluster, |c| c.domains = vec!["s3.fdw.test".into()]).await;
    for request in [
        format!("GET /{BUCKET}/k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        format!("GET /k HTTP/1.1\r\nHost: {BUCKET}.s3.fdw.test:9000\r\nConnection: close\r\n\r\n"),
    ] {
        let (status, body) = unsigned(open.addr(), &request).await;
        assert!(status.contains("200"), "{request}: {status}");
        assert_eq!(body, "hello");
    }
    // A body of unknown length (chunked, no Content-Length) is stored as S3 stores it.
    let (status, body) = unsigned(
        open.addr(),
        &format!(
            "PUT /{BUCKET}/chunked HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert!(status.contains("200"), "{status} {body}");
    assert_eq!(
        s.client.get(BUCKET, "chunked").await.unwrap(),
        b"hello world"
    );
    // A presigned URL valid for longer than S3 allows is denied before anything else.
    let (status, body) = unsigned(
        open.addr(),
        &format!(
            "GET /{BUCKET}/k?X-Amz-Expires=609901 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(status.contains("403"), "{status} {body}");
}

/// Whether the server ends the connection (answering or not) before `patience` is up.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, patience: Duration) -> bool {
    let mut sink = Vec::new();
    matches!(
        tokio::time::timeout(patience, stream.read_to_end(&mut sink)).await,
        Ok(Ok(_) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_and_slow_clients_cannot_hold_the_gateway() {
    // Two connections at most; nobody is cut off by the clock here.
    let s = setup(|c| {
        c.max_connections = 2;
        c.header_timeout = Duration::from_secs(3600);
    })
    .await;
    let addr = s.gateway.addr();
    let request =
        format!("GET /{BUCKET}/k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let third = tokio::spawn({
        let request = request.clone();
        async move { unsigned(addr, &request).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection waits while two silent ones hold both slots"
    );
    drop(first);
    let (status, _) = tokio::time::timeout(Duration::from_secs(60), third)
        .await
        .expect("a slot freed by a closed connection serves the waiting one")
        .unwrap();
    assert!(status.contains("403"), "served (unsigned): {status}");

    // A client that never finishes its headers, or idles, is closed and frees its slot.
    let strict = anonymous_gateway(&s.cluster, |c| {
        c.max_connections = 1;
        c.header_timeout = Duration::from_millis(200);
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(strict.addr()).await.unwrap();
    slow.write_all(b"GET /stage-1/k HTTP/1.1\r\nHost: 127.0")
        .await
        .unwrap();
    assert!(closed_by_server(&mut slow, Duration::from_secs(60)).await);
    let mut silent = tokio::net::TcpStream::connect(strict.addr()).await.unwrap();
    assert!(closed_by_server(&mut silent, Duration::from_secs(60)).await);
    s.client.put(BUCKET, "k", b"hello").await.unwrap();
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(60), unsigned(strict.addr(), &request))
            .await
            .expect("the only slot is free again");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_multipart_uploads_expire_with_their_parts() {
    let s = setup(|c| c.multipart_expiry = Duration::from_millis(500)).await;
    let staged = || async {
        s.client
            .list(BUCKET, ".fdw-multipart/", None, 100)
            .await
            .unwrap()
            .entries
            .len()
    };
    let upload =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key("abandoned")
            .send()
            .await
            .unwrap();
    let upload_id = upload.upload_id().unwrap();
    s.s3.upload_part()
        .bucket(BUCKET)
        .key("abandoned")
        .upload_id(upload_id)
        .part_number(1)
        .body(bytes(1 << 20, 7).into())
        .send()
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    while staged().await > 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "the record and part are never removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = complete(
        &s.s3,
        "abandoned",
        upload_id,
        vec![CompletedPart::builder().part_number(1).build()],
    )
    .await
    .unwrap_err();
    assert_eq!(code(&err), "NoSuchUpload");
    assert_eq!(holders(&s.cluster, BUCKET, "abandoned"), 0);
}

/// One page of ListMultipartUploads: (key, upload id) pairs, common prefixes, and the
/// markers of the next page if there is one.
type UploadsPage = (
    Vec<(String, String)>,
    Vec<String>,
    Option<(String, Option<String>)>,
);

async fn uploads_page(
    s3: &S3Client,
    configure: impl FnOnce(
        aws_sdk_s3::operation::list_multipart_uploads::builders::ListMultipartUploadsFluentBuilder,
    )
        -> aws_sdk_s3::operation::list_multipart_uploads::builders::ListMultipartUploadsFluentBuilder,
) -> UploadsPage {
    let page = configure(s3.list_multipart_uploads().bucket(BUCKET))
        .send()
        .await
        .unwrap();
    let uploads = page
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap().to_owned(),
                u.upload_id().unwrap().to_owned(),
            )
        })
        .collect();
    let prefixes = page
        .common_prefixes()
        .iter()
        .map(|p| p.prefix().unwrap().to_owned())
        .collect();
    let next = page.is_truncated().unwrap().then(|| {
        (
            page.next_key_marker().unwrap().to_owned(),
            page.next_upload_id_marker().map(str::to_owned),
        )
    });
    (uploads, prefixes, next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_progress_list_by_key_then_age() {
    let s = setup(|_| {}).await;
    let mut ids = Vec::new();
    for (bucket, key) in [
        (BUCKET, "b/2"),
        (BUCKET, "a"),
        (BUCKET, "b/1"),
        (BUCKET, "a"),
        (BUCKET, "c"),
        (SCRATCH, "elsewhere"),
    ] {
        let upload =
            s.s3.create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap();
        ids.push((key.to_owned(), upload.upload_id().unwrap().to_owned()));
    }
    let id = |i: usize| ids[i].clone();
    let (all, prefixes, next) = uploads_page(&s.s3, |r| r).await;
    assert_eq!(
        all,
        vec![id(1), id(3), id(2), id(0), id(4)],
        "by key, then by age"
    );
    assert!(prefixes.is_empty() && next.is_none());

    // Pages of two, each resuming from the markers of the last.
    let mut pages = Vec::new();
    let mut markers: Option<(String, Option<String>)> = None;
    loop {
        let (uploads, _, next) = uploads_page(&s.s3, |r| {
            let r = r.max_uploads(2);
            match markers.clone() {
                Some((key, id)) => r.key_marker(key).set_upload_id_marker(id),
                None => r,
            }
        })
        .await;
        pages.push(uploads);
        match next {
            Some(next) => markers = Some(next),
            None => break,
        }
    }
    assert_eq!(
        pages,
        vec![vec![id(1), id(3)], vec![id(2), id(0)], vec![id(4)]]
    );

    let (under_b, _, _) = uploads_page(&s.s3, |r| r.prefix("b/")).await;
    assert_eq!(under_b, vec![id(2), id(0)]);
    let (uploads, prefixes, next) = uploads_page(&s.s3, |r| r.delimiter("/").max_uploads(3)).await;
    assert_eq!(uploads, vec![id(1), id(3)]);
    assert_eq!(prefixes, vec!["b/".to_owned()]);
    let (key, upload_id) = next.expect("c is on the next page");
    let (rest, _, next) = uploads_page(&s.s3, |r| {
        r.delimiter("/")
            .key_marker(key)
            .set_upload_id_marker(upload_id)
    })
    .await;
    assert_eq!(
        (rest, next),
        (vec![id(4)], None),
        "past every upload under b/"
    );

    // Completed or aborted uploads are gone from the list.
    s.s3.abort_multipart_upload()
        .bucket(BUCKET)
        .key("c")
        .upload_id(&id(4).1)
        .send()
        .await
        .unwrap();
    let (all, _, _) = uploads_page(&s.s3, |r| r).await;
    assert_eq!(all, vec![id(1), id(3), id(2), id(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_copied_from_other_objects_by_range_or_whole() {
    let s = setup(|_| {}).await;
    let source = bytes((12 << 20) + 11, 3);
    let small = bytes(1000, 4);
    for (key, data) in [("src/big", &source), ("src/small", &small)] {
        s.s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap();
    }
    let key = "copied/object";
    let id =
        s.s3.create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap()
            .upload_id()
            .unwrap()
            .to_owned();
    let copy = |number: i32, from: &str, range: Option<String>| {
        s.s3.upload_part_copy()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .part_number(number)
            .copy_source(format!("{BUCKET}/{from}"))
            .set_copy_source_range(range)
    };
    // Parts 1 and 2 split the big source at 5 MiB; part 3 is the small one, whole.
    let split = 5 << 20;
    let pieces = [
        (
            1,
            "src/big",
            Some(format!("bytes=0-{}", split - 1)),
            &source[..split],
        ),
        (
            2,
            "src/big",
            Some(format!("bytes={split}-{}", source.len() - 1)),
            &source[split..],
        ),
        (3, "src/small", None, &small[..]),
    ];
    let mut parts = Vec::new();
    for (number, from, range, expected) in pieces {
        let out = copy(number, from, range).send().await.unwrap();
        let result = out.copy_part_result().unwrap();
        let md5 = fdw_net::wire::Digest::of_bytes(expected).etag();
        assert_eq!(result.e_tag(), Some(format!("\"{md5}\"").as_str()));
        assert_eq!(
            result.checksum_crc32(),
            Some(crc32_header(crc32fast::hash(expected)).as_str())
        );
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .e_tag(result.e_tag().unwrap())
                .build(),
        );
    }
    // Bad ranges and failed conditions are refused and store no part.
    for bad in [
        "0-2",
        "bytes=0",
        "bytes=0-",
        "bytes=-5",
        "bytes=5-2",
        "bytes=0-2,3-5",
    ] {
        let err = copy(4, "src/small", Some(bad.into()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "InvalidArgument", "{bad}");
    }
    let err = copy(4, "src/small", Some("bytes=0-1000".into()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidRange");
    let err = copy(4, "src/small", None)
        .copy_source_if_match("\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "PreconditionFailed");
    let err = copy(4, "src/missing", None).send().await.unwrap_err();
    assert_eq!(code(&err), "NoSuchKey");
    let listed =
        s.s3.list_parts()
            .bucket(BUCKET)
            .key(key)
            .upload_id(&id)
            .send()
            .await
            .unwrap();
    assert_eq!(listed.parts().len(), 3, "a refused copy stored a part");

    s.s3.complete_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let got = body(
        s.s3.get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(
        got == [&source[..], &small[..]].concat(),
        "copied bytes differ"
    );
    drop(s.cluster);
}
