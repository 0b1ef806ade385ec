//! The local-directory under-store: durable writes through io_uring, reads, listing,
//! deletes and multipart uploads, on a real directory.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use fdw_persist::{FailureKind, LocalDir, ObjectBytes, Payload, RetryPolicy, UnderStore, upload};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ seed ^ (i >> 8) as u8)
        .collect()
}

fn work_files(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join(".fdw-tmp")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_written_whole_from_their_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path()).unwrap();
    let bytes = data((6 << 20) + 5, 1);
    // Many buffers, as pool chunks hold an object: written at their offsets.
    let chunks: Vec<Bytes> = bytes.chunks(65_536).map(Bytes::copy_from_slice).collect();
    let object = ObjectBytes {
        chunk_crcs: chunks.iter().map(|c| crc32fast::hash(c)).collect(),
        chunks,
        chunk_bytes: 65_536,
        crc: crc32fast::hash(&bytes),
    };
    // Far above the part size, still one write: a file has no request-size limit.
    let report = upload(
        &store,
        "stage-1/part-0.parquet",
        &object,
        0,
        &RetryPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.parts, 0);
    let on_disk = std::fs::read(dir.path().join("stage-1/part-0.parquet")).unwrap();
    assert_eq!(on_disk, bytes);
    assert_eq!(work_files(dir.path()), 0, "no temporary file is left");

    assert_eq!(
        store
            .get("stage-1/part-0.parquet", Some(10..20))
            .await
            .unwrap(),
        bytes[10..20]
    );
    let head = store.head("stage-1/part-0.parquet").await.unwrap().unwrap();
    assert_eq!(head.len, bytes.len() as u64);

    // Overwrite in place: the new bytes replace the old whole.
    store
        .put_object(
            "stage-1/part-0.parquet",
            Payload::from_bytes(Bytes::from_static(b"v2")),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("stage-1/part-0.parquet", None).await.unwrap(),
        &b"v2"[..]
    );

    store
        .put_object("stage-1/b", Payload::from_bytes(Bytes::new()))
        .await
        .unwrap();
    store
        .put_object("other", Payload::from_bytes(Bytes::from_static(b"x")))
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list("stage-1/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, ["stage-1/b", "stage-1/part-0.parquet"]);

    store.delete("stage-1/b").await.unwrap();
    store.delete("stage-1/b").await.unwrap();
    assert_eq!(store.head("stage-1/b").await.unwrap(), None);
    let err = store.get("stage-1/b", None).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_are_checked_whole_and_leave_nothing_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path()).unwrap();
    let (a, b) = (data(1000, 2), data(500, 3));
    let whole: Vec<u8> = [a.clone(), b.clone()].concat();

    let id = store.create_multipart("mp").await.unwrap();
    assert_eq!(
        store.open_uploads("").await.unwrap(),
        [("mp".to_owned(), id.clone())]
    );
    let p1 = store
        .upload_part("mp", &id, 1, Payload::from_bytes(a.clone().into()))
        .await
        .unwrap();
    let p2 = store
        .upload_part("mp", &id, 2, Payload::from_bytes(b.clone().into()))
        .await
        .unwrap();
    store
        .complete_multipart(
            "mp",
            &id,
            &[p1.clone(), p2.clone()],
            crc32fast::hash(&whole),
            1500,
        )
        .await
        .unwrap();
    assert_eq!(store.get("mp", None).await.unwrap(), whole);
    assert!(store.open_uploads("").await.unwrap().is_empty());

    // A whole-object CRC that does not match refuses the upload; nothing lands.
    let id = store.create_multipart("bad").await.unwrap();
    let p1 = store
        .upload_part("bad", &id, 1, Payload::from_bytes(a.into()))
        .await
        .unwrap();
    let err = store
        .complete_multipart("bad", &id, &[p1], 0xdead_beef, 1000)
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert_eq!(store.head("bad").await.unwrap(), None);
    store.abort_multipart("bad", &id).await.unwrap();
    assert!(store.open_uploads("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cannot_leave_the_directory_and_crash_leftovers_are_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path()).unwrap();
    for key in ["../escape", "/abs", "a/../../b", ".fdw-tmp/x", ""] {
        let err = store
            .put_object(key, Payload::from_bytes(Bytes::from_static(b"x")))
            .await
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::Permanent, "{key}: {err}");
    }
    // A temporary file a crash left behind is removed at start-up, never listed.
    std::fs::write(dir.path().join(".fdw-tmp/object-1-1"), b"torn").unwrap();
    let store = LocalDir::new(dir.path()).unwrap();
    assert_eq!(work_files(dir.path()), 0);
    assert!(store.list("").await.unwrap().is_empty());
}
