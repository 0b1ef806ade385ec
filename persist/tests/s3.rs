//! The S3 under-store against a real S3 protocol server in this process (s3s over
//! s3s-fs, HTTP on loopback): aws-sdk-s3 signs and sends real requests, and the server
//! verifies every CRC32 it is given.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use fdw_persist::s3_server::{Fault, S3Server};
use fdw_persist::{
    FailureKind, Fence, ObjectBytes, Payload, RetryPolicy, S3Store, UnderStore, UnderStoreError,
    UploadReport, upload, with_retry,
};

const CHUNK: usize = 64 * 1024;
const PART: u64 = 5 << 20;

struct Setup {
    _root: tempfile::TempDir,
    server: S3Server,
    store: S3Store,
}

async fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let server = S3Server::start(root.path()).await.unwrap();
    let store = S3Store::new(&server.config(), "lake", "fdw/stage-1");
    Setup {
        _root: root,
        server,
        store,
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ (i >> 9) as u8)
        .collect()
}

/// `data` as the pool would hold it: chunks with their CRCs.
fn object(data: &[u8]) -> ObjectBytes {
    ObjectBytes::from_bytes(Bytes::copy_from_slice(data), CHUNK)
}

/// An upload without a fence, in parts of `PART`.
async fn plain_upload(
    store: &S3Store,
    key: &str,
    object: &ObjectBytes,
    policy: &RetryPolicy,
) -> Result<UploadReport, UnderStoreError> {
    upload(store, key, object, &Fence::default(), PART, policy).await
}

fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_put_and_multipart_store_the_exact_bytes_with_their_crc() {
    let s = setup().await;
    let policy = RetryPolicy::default();

    // Up to the part size: one PutObject.
    let small = data(100_000, 1);
    let report = plain_upload(&s.store, "small", &object(&small), &policy)
        .await
        .unwrap();
    assert_eq!(report.parts, 0);
    assert_eq!(s.server.requests("PutObject"), 1);

    // Above it: parts along chunk boundaries, completed with the whole-object CRC.
    let large = data(3 * (5 << 20) + 123, 2);
    let report = plain_upload(&s.store, "large", &object(&large), &policy)
        .await
        .unwrap();
    assert_eq!(report.parts, 4);
    assert_eq!(s.server.requests("UploadPart"), 4);
    assert!(s.server.open_uploads().is_empty());

    for (key, bytes) in [("small", &small), ("large", &large)] {
        assert_eq!(s.store.get(key, None).await.unwrap(), bytes[..], "{key}");
        let head = s.store.head(key).await.unwrap().unwrap();
        assert_eq!(head.len, bytes.len() as u64);
    }
    let listed = s.store.list("").await.unwrap();
    let keys: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["large", "small"]);
    assert_eq!(
        s.store.get("large", Some(70_000..70_100)).await.unwrap(),
        large[70_000..70_100]
    );

    s.store.delete("small", None).await.unwrap();
    assert_eq!(s.store.head("small").await.unwrap(), None);
    s.store.delete("small", None).await.unwrap(); // deleting a missing key succeeds
    let missing = s.store.get("small", None).await.unwrap_err();
    assert_eq!(missing.kind, FailureKind::NotFound, "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_checksum_is_refused_for_good_and_nothing_is_stored() {
    let s = setup().await;
    let bytes = Bytes::from(data(10_000, 3));
    let wrong = Payload::new(vec![bytes.clone()], crc32fast::hash(&bytes) ^ 1);
    let err = s
        .store
        .put_object("k", wrong, &Fence::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert!(err.message.contains("BadDigest"), "{err}");
    assert_eq!(s.store.head("k").await.unwrap(), None);

    // A multipart upload whose whole-object CRC is wrong fails at completion, is
    // aborted, and leaves no object.
    let large = data(6 << 20, 4);
    let mut bad = object(&large);
    bad.crc ^= 1;
    let err = plain_upload(&s.store, "mp", &bad, &RetryPolicy::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert_eq!(err.operation, "CompleteMultipartUpload");
    assert_eq!(s.store.head("mp").await.unwrap(), None);
    assert!(s.server.open_uploads().is_empty());
    assert_eq!(s.server.requests("AbortMultipartUpload"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_the_object_ends_correct() {
    let s = setup().await;
    s.server.inject("PutObject", Fault::InternalError, 2);
    s.server.inject("CreateMultipartUpload", Fault::SlowDown, 1);
    s.server.inject("UploadPart", Fault::SlowDown, 2);
    s.server
        .inject("UploadPart", Fault::Delay(Duration::from_millis(50)), 1);
    s.server
        .inject("CompleteMultipartUpload", Fault::InternalError, 1);

    let small = data(1000, 5);
    let report = plain_upload(&s.store, "small", &object(&small), &quick_retries(5))
        .await
        .unwrap();
    assert_eq!(report.retries, 2);
    let large = data(11 << 20, 6);
    let report = plain_upload(&s.store, "large", &object(&large), &quick_retries(5))
        .await
        .unwrap();
    assert_eq!(report.retries, 4, "1 create + 2 parts + 1 complete");
    assert_eq!(s.store.get("small", None).await.unwrap(), small[..]);
    assert_eq!(s.store.get("large", None).await.unwrap(), large[..]);
    assert!(s.server.open_uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_retried_and_the_object_ends_correct() {
    let s = setup().await;
    // A fresh client has no pooled connection: each try opens one, and the first two
    // are reset (RST) by the server.
    s.server.reset_connections(2);
    let large = data(11 << 20, 8);
    let report = plain_upload(&s.store, "reset", &object(&large), &quick_retries(5))
        .await
        .unwrap();
    assert_eq!(report.retries, 2, "one retry per reset connection");
    assert_eq!(s.store.get("reset", None).await.unwrap(), large[..]);
    assert!(s.server.open_uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_reset_mid_body_are_retried_and_the_object_ends_correct() {
    let s = setup().await;
    // Two connections die 1 MiB into a part's body: the part is sent again whole, and
    // nothing of the cut-off request is stored.
    s.server.reset_connections_after(2, 1 << 20);
    let large = data(11 << 20, 9);
    let report = plain_upload(&s.store, "cut", &object(&large), &quick_retries(5))
        .await
        .unwrap();
    // A connection the client opens but uses only for small requests is never cut.
    assert!(
        (1..=2).contains(&report.retries),
        "one retry per connection cut: {}",
        report.retries
    );
    assert_eq!(s.store.get("cut", None).await.unwrap(), large[..]);
    assert!(s.server.open_uploads().is_empty());
    // A single PUT cut off the same way (a fresh client: no pooled connection).
    let s = setup().await;
    s.server.reset_connections_after(1, 100_000);
    let small = data(3 << 20, 10);
    let report = plain_upload(&s.store, "cut-small", &object(&small), &quick_retries(5))
        .await
        .unwrap();
    assert_eq!(report.retries, 1);
    assert_eq!(s.store.get("cut-small", None).await.unwrap(), small[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_runs_out_of_retries_is_aborted() {
    let s = setup().await;
    s.server.inject("UploadPart", Fault::InternalError, 100);
    let large = data(6 << 20, 7);
    let err = plain_upload(&s.store, "doomed", &object(&large), &quick_retries(3))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Retryable, "{err}");
    assert_eq!(s.server.requests("UploadPart"), 3);
    assert!(s.server.open_uploads().is_empty(), "the upload was aborted");
    assert_eq!(s.store.head("doomed").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_retryable_failure() {
    let s = setup().await;
    let mut config = s.server.config();
    // A port nobody listens on: connection refused.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.endpoint = Some(format!("http://{}", unused.local_addr().unwrap()));
    drop(unused);
    let store = S3Store::new(&config, "lake", "");
    let mut retries = 0;
    let err = with_retry(&quick_retries(2), &mut retries, || store.head("k"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Retryable, "{err}");
    assert_eq!(retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_emulation_adds_latency_caps_bandwidth_and_throttles() {
    use fdw_persist::emulation::CloudEmulation;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let emulation = CloudEmulation {
        first_byte_latency: Duration::from_millis(50),
        jitter: Duration::ZERO,
        connection_bytes_per_sec: Some(8_000_000),
        error_rate: 0.0,
        seed: 1,
    };
    let server = S3Server::start_emulating(root.path(), emulation.clone())
        .await
        .unwrap();
    let store = S3Store::new(&server.config(), "lake", "");
    let bytes = data(1_000_000, 3);
    store
        .put_object(
            "k",
            Payload::from_bytes(Bytes::from(bytes.clone())),
            &Fence::default(),
        )
        .await
        .unwrap();
    // Lower bounds only, which a slow machine cannot break: the latency, plus 1 MB at
    // 8 MB/s (125 ms) less the one 10 ms slice that goes before any wait.
    #[allow(clippy::disallowed_methods)] // the emulated delay is what is measured
    let started = std::time::Instant::now();
    assert_eq!(store.get("k", None).await.unwrap(), bytes[..]);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(50 + 115), "{took:?}");
    drop(server);

    // Every request throttled: S3's SlowDown, which callers retry.
    let server = S3Server::start_emulating(
        root.path(),
        CloudEmulation {
            error_rate: 1.0,
            ..CloudEmulation::none()
        },
    )
    .await
    .unwrap();
    let store = S3Store::new(&server.config(), "lake", "");
    let err = store.get("k", None).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Retryable, "{err}");
    assert!(err.message.contains("SlowDown"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suffix_longer_than_the_object_reads_all_of_it_as_s3_does() {
    let s = setup().await;
    let body = data(1000, 7);
    s.store
        .client()
        .put_object()
        .bucket("lake")
        .key("small")
        .body(body.clone().into())
        .send()
        .await
        .unwrap();
    let got = s
        .store
        .client()
        .get_object()
        .bucket("lake")
        .key("small")
        .range("bytes=-65536")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_range(), Some("bytes 0-999/1000"));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().to_vec(),
        body
    );
}

#[tokio::test]
async fn keys_over_s3s_limit_with_the_prefix_are_refused_before_they_are_written() {
    let setup = setup().await;
    // "fdw/stage-1/" is 12 bytes: a key of 1012 fits, one of 1013 does not.
    assert_eq!(setup.store.refuses_key(&"k".repeat(1012)), None);
    let reason = setup.store.refuses_key(&"k".repeat(1013)).unwrap();
    assert!(
        reason.contains("1025 bytes") && reason.contains("S3_MAX_KEY_BYTES"),
        "{reason}"
    );
    // Absent to reads and deletes, without asking the store.
    let too_long = "k".repeat(1013);
    assert_eq!(setup.store.head(&too_long).await.unwrap(), None);
    let err = setup.store.get(&too_long, None).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::NotFound);
    setup.store.delete(&too_long, None).await.unwrap();
    // Anything S3 accepts is accepted: these keys are not files, only names.
    assert_eq!(setup.store.refuses_key("a//b/../c/"), None);
}
