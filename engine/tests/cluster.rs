//! A three-worker cluster in one process, real QUIC on loopback, the real SDK.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::time::Duration;

use common::{CHUNK, pool};
use fdw_client::{ByteRange, Client, ErrorKind, Replication, WriteType};
use fdw_engine::LocalCluster;
use fdw_engine::store::{ObjectId, Role};
use fdw_net::transport::{self, TransportTuning};
use fdw_net::wire::{Digest, FrameHeader, NumberedParts, PutHeader, Request, Response};
use fdw_net::{BucketName, ObjectKey, Version};

const BUCKET: &str = "stage-1";

async fn cluster(pool_bytes: usize, request_timeout: Duration) -> (LocalCluster, Client) {
    let cluster = LocalCluster::start(3, pool(pool_bytes), |c| c.request_timeout = request_timeout)
        .await
        .unwrap();
    let client = cluster.client("client").await.unwrap();
    (cluster, client)
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn replication(write_type: WriteType, replicas: u8, quorum: u8) -> Replication {
    Replication {
        write_type,
        replicas,
        quorum,
    }
}

/// Which nodes hold `key` in memory.
fn holders(cluster: &LocalCluster, key: &str) -> Vec<u16> {
    let (bucket, key) = (
        BucketName::new(BUCKET).unwrap(),
        ObjectKey::new(key).unwrap(),
    );
    (0..3)
        .filter(|&id| {
            cluster
                .node(id)
                .is_some_and(|n| n.store().get(&bucket, &key).is_ok())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_read_equality_across_sizes_up_to_64_mib() {
    let (cluster, client) = cluster(256 << 20, Duration::from_secs(10)).await;
    let sizes = [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        3 * CHUNK + 5,
        1 << 20,
        64 << 20,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let data = bytes(len, i as u64);
        let key = format!("sizes/{len}");
        let receipt = client.put(BUCKET, &key, &data).await.unwrap();
        assert_eq!(receipt.crc, crc32fast::hash(&data));
        assert_eq!(receipt.replicas.len(), 2, "R=2, W=2 by default");
        assert_eq!(client.get(BUCKET, &key).await.unwrap(), data, "len {len}");
        assert_eq!(
            holders(&cluster, &key).len(),
            2,
            "exactly R replicas hold {key}"
        );
        if len > 10 {
            let range = client
                .get_range(BUCKET, &key, 3..len as u64 - 2)
                .await
                .unwrap();
            assert_eq!(range, data[3..len - 2]);
            // Ranges the replica resolves against the length, in the one request: the
            // answer says which bytes of how many it sent, and its CRC is theirs.
            let whole = len as u64;
            for (asked, want) in [
                (ByteRange::Last(8), whole - 8..whole),
                (ByteRange::From(whole - 3), whole - 3..whole),
                (ByteRange::Span(5..whole + 100), 5..whole),
            ] {
                let (info, got) = client
                    .read(BUCKET, &key, Some(asked.clone()))
                    .await
                    .unwrap();
                let want = want.start as usize..want.end as usize;
                assert_eq!(got, data[want.clone()], "{asked} of {len}");
                assert_eq!(
                    (info.offset, info.len, info.object_len, info.crc),
                    (
                        want.start as u64,
                        want.len() as u64,
                        whole,
                        crc32fast::hash(&data[want])
                    ),
                    "{asked} of {len}"
                );
            }
            let err = client
                .read(BUCKET, &key, Some(ByteRange::From(whole)))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::RangeNotSatisfiable, "{err}");
        }
    }
    // The streaming writer: one frame of memory at the client, same result.
    let data = bytes(5 * CHUNK + 123, 99);
    let receipt = client
        .put_stream(
            BUCKET,
            "streamed",
            data.len() as u64,
            &data[..],
            replication(WriteType::AsyncThrough, 3, 2),
        )
        .await
        .unwrap();
    assert_eq!(receipt.crc, crc32fast::hash(&data));
    assert_eq!(client.get(BUCKET, "streamed").await.unwrap(), data);
    cluster.shutdown().await;
}

mod random_sizes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn any_size_reads_back_identical(
            len in 0usize..(3 << 20),
            seed in any::<u64>(),
            by_reference in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let (cluster, client) = cluster(64 << 20, Duration::from_secs(10)).await;
                let data = bytes(len, seed);
                if by_reference {
                    // Frames sent as slices of the caller's buffer and forwarded by the
                    // primary as the buffers it received: every replica holds the bytes.
                    let all = replication(WriteType::AsyncThrough, 3, 3);
                    let shared = bytes::Bytes::from(data.clone());
                    client.put_bytes(BUCKET, "k", shared, all).await.unwrap();
                    let (bucket, key) = (BucketName::new(BUCKET).unwrap(), ObjectKey::new("k").unwrap());
                    for id in 0..3 {
                        let held = cluster.node(id).unwrap().store().get(&bucket, &key).unwrap();
                        assert_eq!(held.read_all().unwrap(), data, "node {id}");
                    }
                } else {
                    client.put(BUCKET, "k", &data).await.unwrap();
                }
                assert_eq!(client.get(BUCKET, "k").await.unwrap(), data);
                cluster.shutdown().await;
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_list_delete_and_overwrite() {
    let (cluster, client) = cluster(64 << 20, Duration::from_secs(10)).await;
    for key in ["a/1", "a/2", "a/3", "b/1"] {
        client.put(BUCKET, key, key.as_bytes()).await.unwrap();
    }
    let first = client.head(BUCKET, "a/2").await.unwrap();
    assert_eq!((first.len, first.crc), (3, crc32fast::hash(b"a/2")));
    assert!(!first.persisted);

    // Overwrite: a newer version, new bytes.
    let second = client.put(BUCKET, "a/2", b"version two").await.unwrap();
    assert!(second.version > first.version);
    assert_eq!(client.get(BUCKET, "a/2").await.unwrap(), b"version two");

    // Listing merges every node, in key order, paginated.
    let page = client.list(BUCKET, "a/", None, 2).await.unwrap();
    let keys: Vec<String> = page.entries.iter().map(|e| e.key.to_string()).collect();
    assert_eq!(keys, ["a/1", "a/2"]);
    assert_eq!(
        page.entries[1].version, second.version,
        "the newest version is listed"
    );
    let rest = client
        .list(BUCKET, "a/", page.next_start_after.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(
        rest.entries
            .iter()
            .map(|e| e.key.to_string())
            .collect::<Vec<_>>(),
        ["a/3"]
    );
    assert_eq!(rest.next_start_after, None);

    // Delete is a replicated tombstone.
    let deleted = client.delete(BUCKET, "a/1").await.unwrap();
    assert!(deleted > first.version);
    assert_eq!(
        client.get(BUCKET, "a/1").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        client.head(BUCKET, "a/1").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(holders(&cluster, "a/1").is_empty());
    let all = client.list(BUCKET, "", None, 100).await.unwrap();
    assert_eq!(
        all.entries
            .iter()
            .map(|e| e.key.to_string())
            .collect::<Vec<_>>(),
        ["a/2", "a/3", "b/1"]
    );

    // Bad names come back as invalid input before anything is sent.
    assert_eq!(
        client.put(BUCKET, "", b"x").await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        client
            .put("Bad_Bucket", "k", b"x")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_with_one_replica_stopped() {
    let (mut cluster, client) = cluster(64 << 20, Duration::from_secs(5)).await;
    cluster.stop(1).await;
    let data = bytes(300_000, 7);

    // W=2 of R=3: two live replicas are enough.
    let receipt = client
        .put_with(
            BUCKET,
            "w2",
            &data,
            replication(WriteType::AsyncThrough, 3, 2),
        )
        .await
        .unwrap();
    assert_eq!(receipt.replicas.len(), 2);
    assert_eq!(
        holders(&cluster, "w2"),
        [0, 2],
        "the survivors hold the acknowledged data"
    );
    assert_eq!(client.get(BUCKET, "w2").await.unwrap(), data);

    // W=3 of R=3: cannot be met; the error says so, promptly.
    let started = tokio::time::Instant::now();
    let err = client
        .put_with(
            BUCKET,
            "w3",
            &data,
            replication(WriteType::AsyncThrough, 3, 3),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert!(err.message().contains("W=3 of R=3"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the connect timeout, took {:?}",
        started.elapsed()
    );
    cluster.shutdown().await;
}

/// Composing from staged parts: every replica builds its copy from its own parts,
/// checked against the length and CRC asked; a copy that cannot be built commits
/// nowhere if it is the primary's, and a wrong description stores nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_builds_every_copy_from_local_parts_or_commits_nothing() {
    let (cluster, client) = cluster(64 << 20, Duration::from_secs(5)).await;
    let bucket = BucketName::new(BUCKET).unwrap();
    let staged = |key: &str| {
        let key = ObjectKey::new(key).unwrap();
        format!("{}/", fdw_net::placement::staged_name(1, &bucket, &key))
    };
    let all = replication(WriteType::MustCache, 3, 3);
    let parts = [bytes(70_000, 1), bytes(2 * CHUNK, 2), bytes(5, 3)];
    let whole = parts.concat();
    let prefix = staged("composed");
    let mut described = Vec::new();
    for (number, part) in (1u16..).zip(&parts) {
        let key = NumberedParts::key(&prefix, number);
        let receipt = client.put_with(BUCKET, &key, part, all).await.unwrap();
        described.push((number, part.len() as u64, receipt.crc));
    }
    // Every replica composes from its own parts: all three hold the whole object.
    let target = replication(WriteType::AsyncThrough, 3, 3);
    let receipt = client
        .compose(BUCKET, "composed", &prefix, &described, target)
        .await
        .unwrap();
    assert_eq!(receipt.crc, crc32fast::hash(&whole));
    assert_eq!(receipt.replicas.len(), 3);
    for id in 0..3 {
        let store = cluster.node(id).unwrap().store();
        let copy = store
            .get(&bucket, &ObjectKey::new("composed").unwrap())
            .unwrap();
        assert_eq!(copy.read_all().unwrap(), whole, "node {id}'s copy");
    }

    // A described part that is not what is stored: no copy passes, nothing changes.
    for (wrong, kind) in [
        (
            vec![(1, 70_000, described[0].2 ^ 1)],
            ErrorKind::DataCorruption,
        ),
        (vec![(1, 69_999, described[0].2)], ErrorKind::InvalidInput),
        (
            vec![(1, 70_000, described[0].2), (4, 1, 0)],
            ErrorKind::NotFound,
        ),
    ] {
        let err = client
            .compose(BUCKET, "composed", &prefix, &wrong, target)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{wrong:?}: {err}");
        assert_eq!(client.get(BUCKET, "composed").await.unwrap(), whole);
    }

    // The primary lost a part the other replicas hold. It fails only after copying a
    // large first part, so the replicas are composing by then: they must not commit.
    let prefix = staged("torn");
    let large = bytes(16 << 20, 4);
    client
        .put_with(BUCKET, &NumberedParts::key(&prefix, 1), &large, all)
        .await
        .unwrap();
    let small = client
        .put_with(BUCKET, &NumberedParts::key(&prefix, 2), &parts[2], all)
        .await
        .unwrap();
    let placement = fdw_net::placement::Placement::new(client.members().to_vec());
    let primary = placement.preference_list(&bucket, &ObjectKey::new("torn").unwrap())[0].id;
    let lost = ObjectId {
        bucket: bucket.clone(),
        key: ObjectKey::new(NumberedParts::key(&prefix, 2)).unwrap(),
        version: Version(small.version.0 + 1),
    };
    let store = cluster.node(primary).unwrap().store();
    store
        .delete(lost, WriteType::MustCache, Role::Primary, 1)
        .unwrap();
    let described = [
        (1, large.len() as u64, crc32fast::hash(&large)),
        (2, 5, small.crc),
    ];
    let err = client
        .compose(
            BUCKET,
            "torn",
            &prefix,
            &described,
            replication(WriteType::AsyncThrough, 3, 1),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("00002"), "{err}");
    // Give the replicas time to act on the primary's reset: they drop their copies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(holders(&cluster, "torn"), Vec::<u16>::new());
    cluster.shutdown().await;
}

/// A raw connection to node 0, as a misbehaving peer would have.
async fn raw_connection(cluster: &LocalCluster) -> quinn::Connection {
    let identity = cluster.client_identity("raw").unwrap();
    let endpoint = transport::client_endpoint(
        &identity,
        "127.0.0.1:0".parse().unwrap(),
        &TransportTuning::default(),
    )
    .unwrap();
    let member = &cluster.members()[0];
    transport::connect(&endpoint, &member.name, member.addr)
        .await
        .unwrap()
}

fn put_header(key: &str, len: u64) -> Request {
    Request::Put(PutHeader {
        object: fdw_net::wire::ObjectRef {
            bucket: BucketName::new(BUCKET).unwrap(),
            key: ObjectKey::new(key).unwrap(),
        },
        len,
        crc: None,
        frame_bytes: CHUNK as u32,
        replication: Replication::new(WriteType::AsyncThrough, 2, 2).unwrap(),
        forwarded: None,
        metadata: Default::default(),
        condition: None,
    })
}

/// The trailer a put of `data` ends with.
fn trailer(data: &[u8]) -> [u8; fdw_net::wire::TRAILER_BYTES] {
    Digest::of_bytes(data).encode_trailer()
}

/// Sends `bytes` on a new stream of `conn`, finishes it, and reads the response.
async fn raw_request(conn: &quinn::Connection, bytes: &[&[u8]], finish: bool) -> Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    for part in bytes {
        send.write_all(part).await.unwrap();
    }
    if finish {
        send.finish().unwrap();
    }
    transport::read_response(&mut recv).await.unwrap()
}

fn expect_error(response: Response, kind: ErrorKind, needle: &str) {
    match response {
        Response::Error { kind: got, message } => {
            assert_eq!(got, kind, "{message}");
            assert!(message.contains(needle), "{needle:?} not in {message:?}");
        }
        other => panic!("expected {kind:?} error, got {other:?}"),
    }
}

/// A forwarded put of `key` at `version`, as a primary sends it to a replica.
fn forwarded(key: &str, len: u64, version: u64) -> Vec<u8> {
    let Request::Put(mut header) = put_header(key, len) else {
        unreachable!()
    };
    header.forwarded = Some(fdw_net::wire::Forwarded {
        version: Version(version),
        primary: 1,
    });
    Request::Put(header).encode()
}

/// A put that a newer version overtook is read to its end and checked (invariant 3),
/// answered with the CRC of its bytes, and stores nothing: answered early, it left the
/// primary's forward unread, and the write failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_superseded_on_arrival_is_read_checked_and_not_stored() {
    let (cluster, client) = cluster(64 << 20, Duration::from_secs(5)).await;
    let conn = raw_connection(&cluster).await;
    let newer = FrameHeader::for_data(b"new").encode();
    let newest = forwarded("race", 3, 1 << 60);
    let stored = raw_request(&conn, &[&newest, &newer, b"new", &trailer(b"new")], true).await;
    assert!(matches!(stored, Response::Stored { .. }));
    let data = bytes(CHUNK + 10, 7);
    let (first, last) = data.split_at(CHUNK);
    let old = forwarded("race", data.len() as u64, 5);
    let frames = [
        FrameHeader::for_data(first).encode(),
        FrameHeader::for_data(last).encode(),
    ];
    let end = trailer(&data);
    match raw_request(
        &conn,
        &[&old, &frames[0], first, &frames[1], last, &end],
        true,
    )
    .await
    {
        Response::Stored {
            version,
            crc,
            digest,
            replicas,
        } => {
            assert_eq!(version, Version(5));
            assert_eq!(crc, crc32fast::hash(&data), "the CRC of the bytes sent");
            assert!(replicas.is_empty() && digest.is_none(), "no copy kept");
        }
        other => panic!("expected a superseded receipt, got {other:?}"),
    }
    // A damaged frame of a superseded put is still refused.
    let bad = FrameHeader {
        len: 10,
        crc: crc32fast::hash(last) ^ 1,
    }
    .encode();
    expect_error(
        raw_request(&conn, &[&old, &frames[0], first, &bad, last], true).await,
        ErrorKind::DataCorruption,
        "frame 1",
    );
    let node = cluster.node(0).unwrap();
    let head = node
        .store()
        .head(
            &BucketName::new(BUCKET).unwrap(),
            &ObjectKey::new("race").unwrap(),
        )
        .unwrap();
    assert_eq!(head.id.version, Version(1 << 60), "the newer version stays");
    drop(client);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_with_a_bad_crc_is_refused_and_the_worker_survives() {
    let (cluster, client) = cluster(64 << 20, Duration::from_secs(5)).await;
    let conn = raw_connection(&cluster).await;
    let data = bytes(CHUNK + 10, 3);
    let good = FrameHeader::for_data(&data[..CHUNK]).encode();
    let bad = FrameHeader {
        len: 10,
        crc: crc32fast::hash(&data[CHUNK..]) ^ 0xff,
    }
    .encode();
    let header = put_header("corrupt", data.len() as u64).encode();
    let response = raw_request(
        &conn,
        &[&header, &good, &data[..CHUNK], &bad, &data[CHUNK..]],
        true,
    )
    .await;
    expect_error(
        response,
        ErrorKind::DataCorruption,
        "checksum mismatch in chunk 1",
    );
    assert!(
        holders(&cluster, "corrupt").is_empty(),
        "nothing of a refused object is stored anywhere"
    );
    // The same connection, and the worker, go on serving.
    let header = put_header("fine", 3).encode();
    let frame = FrameHeader::for_data(b"abc").encode();
    let stored = raw_request(&conn, &[&header, &frame, b"abc", &trailer(b"abc")], true).await;
    assert!(
        matches!(stored, Response::Stored { digest: Some(d), .. } if d == Digest::of_bytes(b"abc")),
        "{stored:?}"
    );
    assert_eq!(client.get(BUCKET, "fine").await.unwrap(), b"abc");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_nothing_partial_is_visible() {
    let (cluster, client) = cluster(64 << 20, Duration::from_secs(1)).await;
    let conn = raw_connection(&cluster).await;
    let header = put_header("partial", 3 * CHUNK as u64).encode();
    let data = bytes(CHUNK, 1);
    let frame = FrameHeader::for_data(&data).encode();

    // Oversized header.
    let mut huge = header.clone();
    huge[6..10].copy_from_slice(&(1u32 << 20).to_le_bytes());
    expect_error(
        raw_request(&conn, &[&huge], true).await,
        ErrorKind::InvalidInput,
        "MAX_HEADER_BYTES",
    );

    // Unknown protocol version.
    let mut newer = header.clone();
    newer[4..6].copy_from_slice(&9u16.to_le_bytes());
    expect_error(
        raw_request(&conn, &[&newer], true).await,
        ErrorKind::InvalidInput,
        "unsupported protocol version 9",
    );

    // A frame size that is not the cluster's chunk size.
    let Request::Put(mut odd) = put_header("odd", 10) else {
        unreachable!()
    };
    odd.frame_bytes = 4096;
    expect_error(
        raw_request(&conn, &[&Request::Put(odd).encode()], true).await,
        ErrorKind::InvalidInput,
        "chunk size",
    );

    // Truncated: one frame of three, then the stream ends.
    expect_error(
        raw_request(&conn, &[&header, &frame, &data], true).await,
        ErrorKind::InvalidInput,
        "frame 1",
    );

    // Every frame, then a damaged trailer, or none.
    let Request::Put(mut whole) = put_header("partial", 3) else {
        unreachable!()
    };
    whole.crc = Some(crc32fast::hash(b"abc"));
    let whole = Request::Put(whole).encode();
    let abc = FrameHeader::for_data(b"abc").encode();
    let mut damaged = trailer(b"abc");
    damaged[3] ^= 1;
    expect_error(
        raw_request(&conn, &[&whole, &abc, b"abc", &damaged], true).await,
        ErrorKind::InvalidInput,
        "put trailer: its CRC does not match",
    );
    expect_error(
        raw_request(&conn, &[&whole, &abc, b"abc"], true).await,
        ErrorKind::InvalidInput,
        "the trailer",
    );

    // Stalled: one frame of three, then silence (the stream stays open).
    expect_error(
        raw_request(&conn, &[&header, &frame, &data], false).await,
        ErrorKind::Unavailable,
        "no data within",
    );

    assert!(
        holders(&cluster, "partial").is_empty(),
        "nothing partial became visible"
    );
    assert_eq!(
        client.head(BUCKET, "partial").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // And the worker keeps serving.
    client.put(BUCKET, "after", b"still here").await.unwrap();
    assert_eq!(client.get(BUCKET, "after").await.unwrap(), b"still here");
    cluster.shutdown().await;
}
