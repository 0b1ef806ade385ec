//! Recovery in a cluster in this process: when a member stops, the objects it was
//! primary for are taken over and persisted by a survivor, and every unpersisted object
//! gets its R copies back on the live members.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::time::Duration;

use common::{eventually, keys_placed, pool};
use fdw_client::{Client, ErrorKind, PutOptions, Replication, WriteType};
use fdw_engine::node::HeartbeatConfig;
use fdw_engine::{LocalCluster, NodeConfig};
use fdw_net::placement::Placement;
use fdw_net::wire::{Metadata, RecoveryStatus};
use fdw_net::{BucketName, ObjectKey, Version};
use fdw_persist::s3_server::{Fault, S3Server};
use fdw_persist::{RetryPolicy, S3Store, UnderStore};

const BUCKET: &str = "stage-1";

const R2W2: Replication = Replication {
    write_type: WriteType::AsyncThrough,
    replicas: 2,
    quorum: 2,
};

fn quick_failure_detection(c: &mut NodeConfig) {
    c.heartbeat = HeartbeatConfig {
        interval: Duration::from_millis(50),
        failure_timeout: Duration::from_millis(300),
    };
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29) ^ seed ^ (i >> 11) as u8)
        .collect()
}

/// Whether node `id` holds `version` of `key` (or a newer one).
fn holds(cluster: &LocalCluster, id: u16, key: &str, version: Version) -> bool {
    let store = cluster.node(id).unwrap().store();
    let (bucket, key) = (
        BucketName::new(BUCKET).unwrap(),
        ObjectKey::new(key).unwrap(),
    );
    store
        .newest_version(&bucket, &key)
        .is_some_and(|v| v >= version)
}

/// Every live node's recovery counters, summed.
async fn recovery(client: &Client, live: &[u16]) -> RecoveryStatus {
    let mut sum = RecoveryStatus::default();
    for member in client.members().iter().filter(|m| live.contains(&m.id)) {
        let r = client.status_of(member).await.unwrap().recovery;
        sum.taken_over += r.taken_over;
        sum.copies_made += r.copies_made;
        sum.copy_bytes += r.copy_bytes;
        sum.under_replicated += r.under_replicated;
    }
    sum
}

/// Nothing is persisted (no under-store), so every object stays in memory and only
/// recovery keeps its copies: a stopped member's objects end on both survivors, whether
/// it was their primary or their replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpersisted_objects_get_an_owner_and_their_copies_back() {
    let mut cluster = LocalCluster::start(3, pool(64 << 20), |c| {
        quick_failure_detection(c);
        c.persist.default_location = None;
        c.persist.buckets.clear();
    })
    .await
    .unwrap();
    let client = cluster.client("client").await.unwrap();
    let placement = Placement::new(client.members().to_vec());
    // Node 2 primary, and node 2 replica, and neither (nothing to do for those).
    let mut written = Vec::new();
    for (first, seed) in [
        (&[2, 0][..], 1),
        (&[2, 1], 2),
        (&[0, 2], 3),
        (&[1, 2], 4),
        (&[0, 1], 5),
    ] {
        for key in keys_placed(&placement, BUCKET, first, 4) {
            let data = bytes(100_000 + usize::from(seed) * 1000, seed);
            let receipt = client.put_with(BUCKET, &key, &data, R2W2).await.unwrap();
            written.push((key, receipt.version, data));
        }
    }

    cluster.stop(2).await;
    eventually("both survivors hold every object", async || {
        written.iter().all(|(key, version, _)| {
            holds(&cluster, 0, key, *version) && holds(&cluster, 1, key, *version)
        })
    })
    .await;
    eventually(
        "the survivors report nothing under-replicated",
        async || recovery(&client, &[0, 1]).await.under_replicated == 0,
    )
    .await;
    let status = recovery(&client, &[0, 1]).await;
    assert_eq!(status.taken_over, 8, "node 2's eight objects: {status:?}");
    assert_eq!(
        status.copies_made, 16,
        "one copy for each object node 2 held: {status:?}"
    );
    for (key, _, data) in &written {
        assert_eq!(&client.get(BUCKET, key).await.unwrap(), data, "{key}");
    }
    cluster.shutdown().await;
}

/// Node 0 cannot reach S3, so nothing it is primary for gets persisted; once it stops,
/// a survivor takes its objects over and persists them, single and multipart, byte for
/// byte, and every copy becomes evictable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_primarys_uploads_are_taken_over() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let server = S3Server::start(root.path()).await.unwrap();
    let reachable = server.config();
    let mut unreachable = reachable.clone();
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    unreachable.endpoint = Some(format!("http://{}", unused.local_addr().unwrap()));
    drop(unused);
    let mut cluster = LocalCluster::start(3, pool(96 << 20), |c| {
        quick_failure_detection(c);
        c.persist.s3 = Some(if c.id == 0 {
            unreachable.clone()
        } else {
            reachable.clone()
        });
        c.persist.buckets.insert(
            BucketName::new(BUCKET).unwrap(),
            "s3://lake/fdw".parse().unwrap(),
        );
        c.persist.part_bytes = 5 << 20;
        c.persist.retry = RetryPolicy {
            attempts: 2,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        };
        c.persist.failure_backoff = Duration::from_millis(100);
    })
    .await
    .unwrap();
    let client = cluster.client("client").await.unwrap();
    let placement = Placement::new(client.members().to_vec());
    let mut written = Vec::new();
    for (i, key) in keys_placed(&placement, BUCKET, &[0], 6)
        .into_iter()
        .enumerate()
    {
        let len = if i % 3 == 0 {
            (11 << 20) + 7
        } else {
            50_000 + i
        };
        let data = bytes(len, i as u8);
        client.put_with(BUCKET, &key, &data, R2W2).await.unwrap();
        written.push((key, data));
    }
    let s3 = S3Store::new(&reachable, "lake", "fdw");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (key, _) in &written {
        assert_eq!(
            s3.head(key).await.unwrap(),
            None,
            "node 0 cannot persist {key}"
        );
    }

    cluster.stop(0).await;
    eventually("S3 holds every object", async || {
        let mut all = true;
        for (key, _) in &written {
            all &= s3.head(key).await.unwrap().is_some();
        }
        all
    })
    .await;
    for (key, data) in &written {
        assert_eq!(&s3.get(key, None).await.unwrap()[..], &data[..], "{key}");
    }
    eventually("every survivor's copy is persisted", async || {
        let mut backlog = 0;
        for member in &client.members()[1..] {
            backlog += client.status_of(member).await.unwrap().backlog_objects;
        }
        backlog == 0
    })
    .await;
    assert_eq!(recovery(&client, &[1, 2]).await.taken_over, 6);
    assert!(server.open_uploads().is_empty());
    cluster.shutdown().await;
}

/// A whole new cluster over the same S3 bucket knows nothing in memory, as after every
/// member restarted: reads still find what was persisted, read back and checked. But a
/// key whose delete a member holds (not yet persisted) is not found, though S3 still
/// has its old version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_no_member_knows_are_found_in_the_under_store_unless_deleted() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let server = S3Server::start(root.path()).await.unwrap();
    let s3 = server.config();
    let start = || {
        LocalCluster::start(3, pool(64 << 20), |c| {
            c.persist.s3 = Some(s3.clone());
            c.persist.buckets.insert(
                BucketName::new(BUCKET).unwrap(),
                "s3://lake/fdw".parse().unwrap(),
            );
            c.persist.part_bytes = 5 << 20;
            c.persist.failure_backoff = Duration::from_millis(100);
        })
    };
    let first = start().await.unwrap();
    let client = first.client("client").await.unwrap();
    let (small, large) = (bytes(1000, 1), bytes((6 << 20) + 5, 2));
    // The large one (a multipart upload in S3) goes with headers.
    let headers = Metadata::new(vec![
        (
            "content-type".into(),
            "application/vnd.apache.parquet".into(),
        ),
        ("x-amz-meta-stage".into(), "2".into()),
    ])
    .unwrap();
    for (key, data) in [("small", &small), ("large", &large), ("doomed", &small)] {
        let options = PutOptions {
            metadata: if key == "large" {
                headers.clone()
            } else {
                Metadata::empty()
            },
            ..R2W2.into()
        };
        let receipt = client.put_with(BUCKET, key, data, options).await.unwrap();
        client
            .wait_persisted(BUCKET, key, receipt.version, Duration::from_secs(30))
            .await
            .unwrap();
    }
    first.shutdown().await;

    let second = start().await.unwrap();
    let client = second.client("client").await.unwrap();
    assert_eq!(client.get(BUCKET, "small").await.unwrap(), small);
    assert_eq!(
        client
            .get_range(BUCKET, "large", 5..(5 << 20))
            .await
            .unwrap(),
        large[5..(5 << 20)]
    );
    let info = client.head(BUCKET, "large").await.unwrap();
    assert_eq!(
        (info.len, info.crc),
        (large.len() as u64, crc32fast::hash(&large))
    );
    assert!(info.persisted);
    // Its ETag (the MD5 fdw recorded with it, a multipart upload's form in S3 though
    // not in fdw) is the one it was written with.
    assert_eq!(info.digest, fdw_net::wire::Digest::of_bytes(&large));
    // And its headers, which S3 holds as its own (Content-Type and user metadata).
    assert_eq!(info.metadata, headers);
    let in_s3 = S3Store::new(&s3, "lake", "fdw")
        .head("large")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_s3.headers, headers_pairs(&headers));
    let bare = client.head(BUCKET, "small").await.unwrap().metadata;
    assert!(bare.is_empty(), "{bare:?}");
    let err = client.get(BUCKET, "never-written").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    let s3_store = S3Store::new(&s3, "lake", "fdw");
    // The delete cannot reach S3 yet: the tombstone is only in members' memory.
    server.inject("DeleteObject", Fault::InternalError, 1000);
    client.delete_with(BUCKET, "doomed", R2W2).await.unwrap();
    assert!(s3_store.head("doomed").await.unwrap().is_some());
    let err = client.get(BUCKET, "doomed").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let err = client.head(BUCKET, "doomed").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    server.clear_faults();
    second.shutdown().await;
}

/// `metadata` as the under-store's headers.
fn headers_pairs(metadata: &Metadata) -> Vec<(String, String)> {
    metadata
        .iter()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}
