//! The persist pipeline end to end: a three-worker cluster in this process, the SDK, and
//! a real S3 protocol server on loopback (s3s over s3s-fs, which verifies every CRC32
//! it is sent), with faults injected between the pipeline and the server.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::time::Duration;

use common::{eventually, pool};
use fdw_client::{Client, ErrorKind, Replication, WriteType};
use fdw_engine::LocalCluster;
use fdw_engine::node::PersistConfig;
use fdw_net::{BucketName, ObjectKey};
use fdw_persist::s3_server::{Fault, S3Server};
use fdw_persist::{RetryPolicy, S3Store, UnderStore, UnderStoreLocation};

const BUCKET: &str = "stage-1";

struct Setup {
    _root: tempfile::TempDir,
    server: S3Server,
    /// The bucket's objects as the pipeline writes them.
    s3: S3Store,
    cluster: LocalCluster,
    client: Client,
}

/// A cluster whose bucket persists to `s3://lake/fdw` on the in-process server.
async fn setup(pool_bytes: usize, tune: impl Fn(&mut PersistConfig)) -> Setup {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let server = S3Server::start(root.path()).await.unwrap();
    let s3_config = server.config();
    let cluster = LocalCluster::start(3, pool(pool_bytes), |c| {
        c.persist.s3 = Some(s3_config.clone());
        c.persist.buckets.insert(
            BucketName::new(BUCKET).unwrap(),
            "s3://lake/fdw".parse().unwrap(),
        );
        c.persist.part_bytes = 5 << 20;
        c.persist.retry = RetryPolicy {
            attempts: 3,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(50),
        };
        c.persist.failure_backoff = Duration::from_millis(100);
        if let Some(store) = c.store.as_mut() {
            store.backpressure_timeout = Duration::from_secs(1);
        }
        tune(&mut c.persist);
    })
    .await
    .unwrap();
    let client = cluster.client("client").await.unwrap();
    Setup {
        s3: S3Store::new(&s3_config, "lake", "fdw"),
        _root: root,
        server,
        cluster,
        client,
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed ^ (i >> 10) as u8)
        .collect()
}

/// Whether no node has anything left to persist: uploaded at the primary, and every
/// replica told.
async fn drained(client: &Client) -> bool {
    client
        .status()
        .await
        .into_iter()
        .all(|(_, s)| s.is_ok_and(|s| s.backlog_objects == 0 && s.uploads_in_flight == 0))
}

/// Waits until [`drained`], showing every node's status if it never is.
async fn wait_drained(client: &Client) {
    for _ in 0..1500 {
        if drained(client).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backlog never drained: {:#?}", client.status().await);
}

fn memory_state(cluster: &LocalCluster, key: &str) -> Vec<(u16, bool)> {
    let (bucket, key) = (
        BucketName::new(BUCKET).unwrap(),
        ObjectKey::new(key).unwrap(),
    );
    (0..3)
        .filter_map(|id| {
            let meta = cluster.node(id)?.store().head(&bucket, &key).ok()?;
            Some((id, meta.state == fdw_engine::store::ObjectState::Persisted))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_objects_reach_s3_checksummed_and_every_replica_learns_it() {
    let s = setup(128 << 20, |_| {}).await;
    let small = bytes(100_000, 1);
    let large = bytes((12 << 20) + 777, 2); // three parts of 5 MiB at most
    s.client.put(BUCKET, "small", &small).await.unwrap();
    s.client.put(BUCKET, "dir/large", &large).await.unwrap();
    wait_drained(&s.client).await;

    assert_eq!(s.s3.get("small", None).await.unwrap(), small[..]);
    assert_eq!(s.s3.get("dir/large", None).await.unwrap(), large[..]);
    assert_eq!(s.server.requests("PutObject"), 1);
    assert_eq!(s.server.requests("UploadPart"), 3);
    assert!(s.server.open_uploads().is_empty());
    // Both replicas of each object hold it as persisted: evictable memory.
    for key in ["small", "dir/large"] {
        assert_eq!(
            memory_state(&s.cluster, key)
                .iter()
                .filter(|(_, persisted)| *persisted)
                .count(),
            2,
            "{key}: {:?}",
            memory_state(&s.cluster, key)
        );
    }
    let head = s.client.head(BUCKET, "dir/large").await.unwrap();
    assert!(head.persisted);
    assert_eq!(head.persist_failure, None);
    let uploads: u64 = s
        .client
        .status()
        .await
        .into_iter()
        .map(|(_, st)| st.unwrap().uploads_done)
        .sum();
    assert_eq!(uploads, 2);
    s.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_while_the_older_version_uploads_ends_with_the_newer() {
    let s = setup(128 << 20, |_| {}).await;
    // v1's upload is slow; v2 is committed while it is in flight.
    s.server
        .inject("PutObject", Fault::Delay(Duration::from_millis(400)), 1);
    let v1 = bytes(50_000, 3);
    let v2 = bytes(40_000, 4);
    s.client.put(BUCKET, "k", &v1).await.unwrap();
    eventually("v1's upload has started", async || {
        s.server.requests("PutObject") >= 1
    })
    .await;
    s.client.put(BUCKET, "k", &v2).await.unwrap();
    wait_drained(&s.client).await;
    assert_eq!(
        s.s3.get("k", None).await.unwrap(),
        v2[..],
        "the older version must never land after the newer"
    );
    // v1; v2 guessing the key is new, refused (v1 is there); v2 replacing v1.
    assert_eq!(s.server.requests("PutObject"), 3);
    assert_eq!(s.server.requests("HeadObject"), 1);
    s.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_the_upload_leaves_the_key_absent() {
    let s = setup(128 << 20, |_| {}).await;
    s.server
        .inject("PutObject", Fault::Delay(Duration::from_millis(400)), 1);
    s.client
        .put(BUCKET, "gone", &bytes(30_000, 5))
        .await
        .unwrap();
    eventually("the upload has started", async || {
        s.server.requests("PutObject") >= 1
    })
    .await;
    s.client.delete(BUCKET, "gone").await.unwrap();
    wait_drained(&s.client).await;
    assert_eq!(s.s3.head("gone").await.unwrap(), None, "never resurrected");
    assert_eq!(s.server.requests("DeleteObject"), 1);
    s.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_visible_retried_and_leave_no_multipart_upload_open() {
    let s = setup(128 << 20, |_| {}).await;
    // Every part fails for a while: each attempt aborts its upload, and the object
    // waits in the queue with the reason shown.
    s.server.inject("UploadPart", Fault::SlowDown, 1000);
    let data = bytes(6 << 20, 6);
    s.client.put(BUCKET, "big", &data).await.unwrap();
    eventually("the failure shows in head", async || {
        s.client
            .head(BUCKET, "big")
            .await
            .is_ok_and(|h| h.persist_failure.is_some_and(|f| f.contains("SlowDown")))
    })
    .await;
    let failing = s.client.status().await;
    assert!(failing.iter().any(|(_, st)| {
        st.as_ref()
            .is_ok_and(|st| st.upload_failures > 0 && st.last_upload_failure.is_some())
    }));
    assert!(
        s.server.open_uploads().is_empty(),
        "failed uploads are aborted"
    );

    s.server.clear_faults();
    wait_drained(&s.client).await;
    assert_eq!(s.s3.get("big", None).await.unwrap(), data[..]);
    assert!(s.server.open_uploads().is_empty());
    let head = s.client.head(BUCKET, "big").await.unwrap();
    assert!(head.persisted && head.persist_failure.is_none());
    s.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_full_of_unpersisted_data_waits_fails_then_recovers() {
    // 16 MiB pools: the unpersisted limit is about 14 MiB per node.
    let s = setup(16 << 20, |_| {}).await;
    s.server.inject("PutObject", Fault::InternalError, 100_000);
    let one_mib = bytes(1 << 20, 7);
    let replication = Replication {
        write_type: WriteType::AsyncThrough,
        replicas: 3,
        quorum: 3,
    };
    let mut refused = None;
    for i in 0..40 {
        match s
            .client
            .put_with(BUCKET, &format!("fill/{i}"), &one_mib, replication)
            .await
        {
            Ok(_) => {}
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let err = refused.expect("memory full of unpersisted data refuses writes");
    assert_eq!(err.kind(), ErrorKind::ClusterFull, "{err}");
    assert!(err.to_string().contains("backlog"), "{err}");

    s.server.clear_faults();
    wait_drained(&s.client).await;
    s.client
        .put_with(BUCKET, "after", &one_mib, replication)
        .await
        .unwrap();
    s.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_directory_is_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let location: UnderStoreLocation = format!("file://{}", dir.path().display()).parse().unwrap();
    let cluster = LocalCluster::start(3, pool(64 << 20), |c| {
        c.persist.default_location = Some(location.clone());
    })
    .await
    .unwrap();
    let client = cluster.client("client").await.unwrap();
    let data = bytes(300_000, 8);
    client.put("any-bucket", "a/b/c.csv", &data).await.unwrap();
    wait_drained(&client).await;
    // Buckets without a location of their own share the default, each under its name.
    let file = dir.path().join("any-bucket/a/b/c.csv");
    assert_eq!(std::fs::read(&file).unwrap(), data);
    client.delete("any-bucket", "a/b/c.csv").await.unwrap();
    wait_drained(&client).await;
    assert!(!file.exists());

    // Keys no file of their own could hold are refused before anything is stored,
    // naming the reason; nothing is acknowledged that could never be persisted.
    for key in ["a/../x", "a//b", "x.fdw-dir"] {
        let err = client.put("any-bucket", key, b"never").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{key}: {err}");
        assert!(err.to_string().contains("under-store cannot hold"), "{err}");
        assert_eq!(
            client.get("any-bucket", key).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
    // A memory-only write needs no file.
    let memory_only = Replication::new(WriteType::MustCache, 2, 2).unwrap();
    client
        .put_with("any-bucket", "a//b", b"kept", memory_only)
        .await
        .unwrap();
    // `0` and the "directory" object `0/` are two files, and `d/` sits beside what is
    // under it: all persisted.
    for (key, body) in [
        ("0", "file"),
        ("0/", ""),
        ("d/", "marker"),
        ("d/inner", "inner"),
    ] {
        client
            .put("any-bucket", key, body.as_bytes())
            .await
            .unwrap();
    }
    wait_drained(&client).await;
    for (file, body) in [
        ("0", "file"),
        ("0.fdw-dir", ""),
        ("d.fdw-dir", "marker"),
        ("d/inner", "inner"),
    ] {
        let on_disk = std::fs::read(dir.path().join("any-bucket").join(file)).unwrap();
        assert_eq!(on_disk, body.as_bytes(), "{file}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_types_decide_when_and_whether_the_under_store_is_written() {
    let s = setup(64 << 20, |p| p.ack_timeout = Duration::from_millis(500)).await;
    let with = |write_type| Replication {
        write_type,
        replicas: 2,
        quorum: 2,
    };
    let data = bytes(70_000, 9);

    // CACHE_THROUGH and THROUGH: acknowledged only once the under-store has it.
    for (key, write_type) in [("ct", WriteType::CacheThrough), ("t", WriteType::Through)] {
        s.client
            .put_with(BUCKET, key, &data, with(write_type))
            .await
            .unwrap();
        assert_eq!(s.s3.get(key, None).await.unwrap(), data[..], "{key}");
    }
    // THROUGH is not cached: once persisted, every replica drops its bytes, and a get
    // reads them back from the under-store.
    eventually("THROUGH's bytes leave memory", async || {
        evicted_everywhere(&s.cluster, "t")
    })
    .await;
    assert!(
        !evicted_everywhere(&s.cluster, "ct"),
        "CACHE_THROUGH stays cached"
    );
    assert_eq!(s.client.get(BUCKET, "t").await.unwrap(), data);

    // MUST_CACHE: never persisted.
    s.client
        .put_with(BUCKET, "mc", &data, with(WriteType::MustCache))
        .await
        .unwrap();
    // ASYNC_THROUGH: acknowledged first; the SDK can wait for the upload.
    let receipt = s.client.put(BUCKET, "at", &data).await.unwrap();
    let info = s
        .client
        .wait_persisted(BUCKET, "at", receipt.version, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(info.persisted);
    assert_eq!(s.s3.get("at", None).await.unwrap(), data[..]);
    wait_drained(&s.client).await;
    assert_eq!(
        s.s3.head("mc").await.unwrap(),
        None,
        "MUST_CACHE stays in memory"
    );
    assert_eq!(s.client.get(BUCKET, "mc").await.unwrap(), data);

    // An under-store that keeps failing: CACHE_THROUGH says so within its timeout,
    // and wait_persisted gives the reason.
    s.server.inject("PutObject", Fault::InternalError, 100_000);
    let err = s
        .client
        .put_with(BUCKET, "ct-down", &data, with(WriteType::CacheThrough))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("under-store"), "{err}");
    let receipt = s.client.put(BUCKET, "at-down", &data).await.unwrap();
    let err = s
        .client
        .wait_persisted(
            BUCKET,
            "at-down",
            receipt.version,
            Duration::from_millis(800),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("InternalError"), "{err}");
    s.server.clear_faults();
    wait_drained(&s.client).await;
    assert_eq!(s.s3.get("ct-down", None).await.unwrap(), data[..]);
    s.cluster.shutdown().await;
}

/// Whether every node that holds `key` has evicted its bytes (it stays known by size
/// and CRC, for read-through), and at least one does.
fn evicted_everywhere(cluster: &LocalCluster, key: &str) -> bool {
    let (bucket, key) = (
        BucketName::new(BUCKET).unwrap(),
        ObjectKey::new(key).unwrap(),
    );
    let states: Vec<_> = (0..3)
        .filter_map(|id| match cluster.node(id)?.store().get(&bucket, &key) {
            Err(fdw_engine::store::StoreError::NotFound { .. }) => None,
            other => Some(matches!(
                other,
                Err(fdw_engine::store::StoreError::Evicted(_))
            )),
        })
        .collect();
    !states.is_empty() && states.iter().all(|&evicted| evicted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_objects_are_read_back_from_s3_identical_and_cached_again() {
    // 16 MiB pools hold five of the twelve 3 MiB objects: the rest are evicted once
    // persisted, on every node (R=3).
    let s = setup(16 << 20, |_| {}).await;
    let everywhere = Replication {
        write_type: WriteType::AsyncThrough,
        replicas: 3,
        quorum: 3,
    };
    let objects: Vec<Vec<u8>> = (0..12)
        .map(|i| bytes((3 << 20) + i * 4099, i as u8))
        .collect();
    for (i, data) in objects.iter().enumerate() {
        s.client
            .put_with(BUCKET, &format!("obj/{i}"), data, everywhere)
            .await
            .unwrap();
        wait_drained(&s.client).await;
    }
    assert!(evicted_everywhere(&s.cluster, "obj/0"));
    assert!(s.cluster.node(0).unwrap().store().stats().evictions > 0);
    // Head needs no bytes: an evicted object is still known, persisted.
    let head = s.client.head(BUCKET, "obj/0").await.unwrap();
    assert!(head.persisted && head.len == objects[0].len() as u64);

    // Concurrent gets of one evicted object: one fetch from S3, all get the bytes.
    let gets_before = s.server.requests("GetObject");
    let get = || s.client.get(BUCKET, "obj/0");
    let reads = tokio::join!(get(), get(), get(), get());
    for read in [reads.0, reads.1, reads.2, reads.3] {
        assert!(read.unwrap() == objects[0], "obj/0 reads back identical");
    }
    assert_eq!(
        s.server.requests("GetObject"),
        gets_before + 1,
        "fetched once"
    );
    // Cached again: the next read does not go to S3.
    assert!(s.client.get(BUCKET, "obj/0").await.unwrap() == objects[0]);
    assert_eq!(
        s.server.requests("GetObject"),
        gets_before + 1,
        "cached again"
    );

    // A delete of an evicted object is never undone by a read-through.
    assert!(evicted_everywhere(&s.cluster, "obj/1"));
    s.client
        .delete_with(BUCKET, "obj/1", everywhere)
        .await
        .unwrap();
    let err = s.client.get(BUCKET, "obj/1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    wait_drained(&s.client).await;
    assert_eq!(s.s3.head("obj/1").await.unwrap(), None);
    let err = s.client.get(BUCKET, "obj/1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    // An S3 copy that is not what was written (changed behind fdw's back) is refused
    // by every replica, never served.
    assert!(evicted_everywhere(&s.cluster, "obj/2"));
    let changed = fdw_persist::Payload::from_bytes(bytes(100, 0).into());
    s.s3.put_object("obj/2", changed, &fdw_persist::Fence::default())
        .await
        .unwrap();
    let err = s.client.get(BUCKET, "obj/2").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("overwritten"), "{err}");
    assert!(
        evicted_everywhere(&s.cluster, "obj/2"),
        "nothing was cached"
    );

    // Every other object reads back identical, whole and in part, through a failing S3.
    s.server.inject("GetObject", Fault::InternalError, 2);
    s.server.inject("GetObject", Fault::SlowDown, 1);
    for (i, data) in objects.iter().enumerate().skip(3).rev() {
        let key = format!("obj/{i}");
        assert!(s.client.get(BUCKET, &key).await.unwrap() == *data, "{key}");
        let range = 1_000_000..2_000_123u64;
        let part = s
            .client
            .get_range(BUCKET, &key, range.clone())
            .await
            .unwrap();
        assert!(
            part == data[range.start as usize..range.end as usize],
            "{key} range"
        );
    }
    assert!(
        s.server.requests("GetObject") > gets_before + 5,
        "evicted ones came from S3"
    );
    s.cluster.shutdown().await;
}
