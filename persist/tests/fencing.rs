//! Fenced writes (invariant 5 across writers): whichever node persists a version, and
//! however late, an older version never replaces a newer one and a delete never removes
//! a newer version. Against both under-stores: S3 over HTTP (the in-process server)
//! and a local directory shared by several stores, as nodes share it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use fdw_persist::s3_server::{Fault, S3Server};
use fdw_persist::{
    Expect, FailureKind, Fence, LocalDir, ObjectBytes, Payload, Persisted, RetryPolicy, S3Store,
    UnderStore, persist_version,
};

const PART: u64 = 5 << 20;

fn object(version: u64, len: usize) -> ObjectBytes {
    let bytes: Vec<u8> = (0..len).map(|i| (i as u64 ^ version) as u8).collect();
    ObjectBytes {
        etag: Some(etag(version)),
        headers: headers(version),
        ..ObjectBytes::from_bytes(Bytes::from(bytes), 64 << 10)
    }
}

/// The headers the object of `version` is written with, sorted by name.
fn headers(version: u64) -> Vec<(String, String)> {
    [
        ("cache-control", "max-age=60".to_owned()),
        ("content-type", format!("text/csv; v={version}")),
        ("expires", "Wed, 21 Oct 2026 07:28:00 GMT".to_owned()),
        ("x-amz-meta-stage", format!("stage {version}: filter")),
    ]
    .map(|(n, v)| (n.to_owned(), v))
    .to_vec()
}

/// The fdw ETag the object of `version` is written with.
fn etag(version: u64) -> String {
    format!("{version:032x}-2")
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
    }
}

async fn s3() -> (tempfile::TempDir, S3Server, S3Store) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let server = S3Server::start(root.path()).await.unwrap();
    let store = S3Store::new(&server.config(), "lake", "fdw");
    (root, server, store)
}

/// Writes, deletes and their versions, in an order no single primary would produce.
async fn versions_only_move_forward(store: &impl UnderStore) {
    let write = |version, len| async move {
        persist_version(
            store,
            "k",
            Some(&object(version, len)),
            version,
            PART,
            &policy(),
        )
        .await
        .unwrap()
    };
    assert!(matches!(write(5, 1000).await, Persisted::Written(_)));
    let head = store.head("k").await.unwrap().unwrap();
    assert_eq!(head.version, Some(5));
    assert_eq!(
        head.crc,
        Some(object(5, 1000).crc),
        "the CRC is recorded too"
    );
    assert_eq!(head.etag, Some(etag(5)), "and fdw's ETag");
    assert_eq!(head.headers, headers(5), "and the object's headers");
    assert!(head.tag.is_some());

    // Older, or the same again (a take-over that repeats an upload): nothing written.
    assert_eq!(write(4, 10).await, Persisted::Preempted { stored: 5 });
    assert_eq!(write(5, 1000).await, Persisted::Preempted { stored: 5 });
    assert_eq!(store.get("k", None).await.unwrap().len(), 1000);

    // A delete older than what is stored leaves it; a newer one removes it.
    let retry = policy();
    let delete = |version| persist_version(store, "k", None, version, PART, &retry);
    assert_eq!(delete(3).await.unwrap(), Persisted::Preempted { stored: 5 });
    assert!(store.head("k").await.unwrap().is_some());
    // A multipart upload records the ETag and the headers too.
    assert!(matches!(
        write(7, PART as usize + 10).await,
        Persisted::Written(_)
    ));
    let head = store.head("k").await.unwrap().unwrap();
    assert_eq!((head.etag, head.headers), (Some(etag(7)), headers(7)));
    assert!(matches!(delete(8).await.unwrap(), Persisted::Written(_)));
    assert_eq!(store.head("k").await.unwrap(), None);
    assert!(matches!(delete(9).await.unwrap(), Persisted::Written(_)));

    // A write whose expectation no longer holds changes nothing.
    assert!(matches!(write(10, 100).await, Persisted::Written(_)));
    let stale = Fence {
        version: Some(11),
        etag: None,
        headers: Vec::new(),
        expect: Some(Expect::Absent),
    };
    let payload = Payload::from_bytes(Bytes::from_static(b"stale"));
    let err = store.put_object("k", payload, &stale).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Conflict, "{err}");
    let wrong_tag = Some(Expect::Tag("not-the-tag".to_owned()));
    let err = store.delete("k", wrong_tag.as_ref()).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Conflict, "{err}");
    assert_eq!(store.head("k").await.unwrap().unwrap().version, Some(10));

    // A multipart upload records its version and whole CRC like a single PUT.
    let large = (6 << 20) + 3;
    assert!(matches!(write(12, large).await, Persisted::Written(_)));
    let head = store.head("k").await.unwrap().unwrap();
    assert_eq!(
        (head.version, head.crc, head.len),
        (Some(12), Some(object(12, large).crc), large as u64)
    );
}

/// Many writers persist versions 1..=n of one key at once, in a shuffled order: the
/// store ends with the newest.
async fn racing_writers_leave_the_newest(stores: &[impl UnderStore + Clone + 'static]) {
    let n = 24u64;
    let mut order: Vec<u64> = (1..=n).collect();
    fastrand::Rng::with_seed(7).shuffle(&mut order);
    let mut tasks = Vec::new();
    for (i, version) in order.into_iter().enumerate() {
        let store = stores[i % stores.len()].clone();
        tasks.push(tokio::spawn(async move {
            let object = object(version, 3000 + version as usize);
            persist_version(&store, "race", Some(&object), version, PART, &policy()).await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let store = &stores[0];
    let head = store.head("race").await.unwrap().unwrap();
    assert_eq!(head.version, Some(n));
    let bytes = store.get("race", None).await.unwrap();
    assert_eq!(bytes, object(n, 3000 + n as usize).chunks.concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_versions_only_move_forward() {
    let (_root, _server, store) = s3().await;
    versions_only_move_forward(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dir_versions_only_move_forward() {
    let dir = tempfile::tempdir().unwrap();
    versions_only_move_forward(&LocalDir::new(dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_racing_writers_leave_the_newest() {
    let (_root, server, store) = s3().await;
    let other = S3Store::new(&server.config(), "lake", "fdw");
    racing_writers_leave_the_newest(&[store, other]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dir_racing_writers_leave_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<_> = (0..3).map(|_| LocalDir::new(dir.path()).unwrap()).collect();
    racing_writers_leave_the_newest(&stores).await;
}

/// The case fencing exists for: a multipart upload of an older version is held up (a
/// primary paused mid-upload) while a newer version lands. Its completion is refused,
/// it is aborted, and the newer version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_multipart_upload_never_replaces_a_newer_version() {
    let (_root, server, store) = s3().await;
    server.inject(
        "CompleteMultipartUpload",
        Fault::Delay(Duration::from_millis(500)),
        1,
    );
    let late = {
        let store = store.clone();
        tokio::spawn(async move {
            let object = object(1, (6 << 20) + 3);
            persist_version(&store, "k", Some(&object), 1, PART, &policy()).await
        })
    };
    // Wait until the old upload is held at its completion, then write the newer one.
    while server.requests("CompleteMultipartUpload") == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let newer = object(2, 100);
    let written = persist_version(&store, "k", Some(&newer), 2, PART, &policy())
        .await
        .unwrap();
    assert!(matches!(written, Persisted::Written(_)));

    assert_eq!(
        late.await.unwrap().unwrap(),
        Persisted::Preempted { stored: 2 }
    );
    assert_eq!(
        store.get("k", None).await.unwrap(),
        newer.chunks.concat(),
        "the newer version stays"
    );
    assert!(
        server.open_uploads().is_empty(),
        "the late upload was aborted"
    );
}
