//! The local-directory under-store: durable writes through io_uring, reads, listing,
//! deletes and multipart uploads, on a real directory.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use fdw_persist::{
    FailureKind, Fence, LocalDir, ObjectBytes, Payload, RetryPolicy, UnderStore, upload,
};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8) ^ seed ^ (i >> 8) as u8)
        .collect()
}

/// Temporary files and open uploads (the lock file is always there).
fn work_files(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join(".fdw-tmp"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "lock")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_written_whole_from_their_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path()).unwrap();
    let bytes = data((6 << 20) + 5, 1);
    // Many buffers, as pool chunks hold an object: written at their offsets.
    let object = ObjectBytes::from_bytes(Bytes::copy_from_slice(&bytes), 65_536);
    // Far above the part size, still one write: a file has no request-size limit.
    let report = upload(
        &store,
        "stage-1/part-0.parquet",
        &object,
        &Fence::default(),
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
            &Fence::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("stage-1/part-0.parquet", None).await.unwrap(),
        &b"v2"[..]
    );

    store
        .put_object(
            "stage-1/b",
            Payload::from_bytes(Bytes::new()),
            &Fence::default(),
        )
        .await
        .unwrap();
    store
        .put_object(
            "other",
            Payload::from_bytes(Bytes::from_static(b"x")),
            &Fence::default(),
        )
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

    store.delete("stage-1/b", None).await.unwrap();
    store.delete("stage-1/b", None).await.unwrap();
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

    let id = store
        .create_multipart("mp", &Fence::default())
        .await
        .unwrap();
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
            &Fence::default(),
        )
        .await
        .unwrap();
    assert_eq!(store.get("mp", None).await.unwrap(), whole);
    assert!(store.open_uploads("").await.unwrap().is_empty());

    // A whole-object CRC that does not match refuses the upload; nothing lands.
    let id = store
        .create_multipart("bad", &Fence::default())
        .await
        .unwrap();
    let p1 = store
        .upload_part("bad", &id, 1, Payload::from_bytes(a.into()))
        .await
        .unwrap();
    let err = store
        .complete_multipart("bad", &id, &[p1], 0xdead_beef, 1000, &Fence::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert_eq!(store.head("bad").await.unwrap(), None);
    store.abort_multipart("bad", &id).await.unwrap();
    assert!(store.open_uploads("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_sharing_a_directory_never_mix_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<_> = (0..3).map(|_| LocalDir::new(dir.path()).unwrap()).collect();
    let mut writes = Vec::new();
    for round in 0..20u8 {
        for (i, store) in stores.iter().enumerate() {
            let store = store.clone();
            let body = data(50_000 + i * 1000, round ^ i as u8);
            let key = format!("k{i}-{round}");
            writes.push(tokio::spawn(async move {
                store
                    .put_object(
                        &key,
                        Payload::from_bytes(body.clone().into()),
                        &Fence::default(),
                    )
                    .await
                    .unwrap();
                (key, body)
            }));
        }
    }
    for write in writes {
        let (key, body) = write.await.unwrap();
        assert_eq!(std::fs::read(dir.path().join(&key)).unwrap(), body, "{key}");
    }
}

/// A put of `key`, which the store must refuse as a permanent failure.
async fn refused_put(store: &LocalDir, key: &str) -> fdw_persist::UnderStoreError {
    let err = store
        .put_object(
            key,
            Payload::from_bytes(Bytes::from_static(b"x")),
            &Fence::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, FailureKind::Permanent, "{key}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cannot_leave_the_directory_and_crash_leftovers_are_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path()).unwrap();
    for key in ["../escape", "/abs", "a/../../b", ".fdw-tmp/x", ""] {
        refused_put(&store, key).await;
    }
    // A temporary file is never listed. One a crash left behind long ago is removed at
    // start-up; a fresh one may be another node's, mid-write, and stays.
    let leftover = dir.path().join(".fdw-tmp/object-1-1");
    let fresh = dir.path().join(".fdw-tmp/object-2-1");
    std::fs::write(&leftover, b"torn").unwrap();
    std::fs::write(&fresh, b"in flight").unwrap();
    let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
    std::fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let store = LocalDir::new(dir.path()).unwrap();
    assert!(!leftover.exists() && fresh.exists());
    assert!(store.list("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_a_file_of_its_own_or_refused_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path()).unwrap();
    let longest_name = "n".repeat(255);
    // A "directory" object beside a file of the same name and beside keys under it.
    let keys = [
        "0".to_owned(),
        "0/".to_owned(),
        "d/".to_owned(),
        "d/x".to_owned(),
        "d/sub dir/ünï.parquet".to_owned(),
        format!("long/{longest_name}"),
    ];
    for (n, key) in keys.iter().enumerate() {
        assert_eq!(store.refuses_key(key), None, "{key}");
        let body = Bytes::from(format!("body of {key} #{n}"));
        store
            .put_object(key, Payload::from_bytes(body), &Fence::default())
            .await
            .unwrap();
    }
    for (n, key) in keys.iter().enumerate() {
        let body = format!("body of {key} #{n}");
        assert_eq!(
            store.get(key, None).await.unwrap(),
            body.as_bytes(),
            "{key}"
        );
        assert_eq!(
            store.head(key).await.unwrap().unwrap().len,
            body.len() as u64
        );
    }
    let mut sorted = keys.to_vec();
    sorted.sort();
    let listed: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(listed, sorted);
    let under_d: Vec<String> = store
        .list("d/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(under_d, ["d/", "d/sub dir/ünï.parquet", "d/x"]);
    store.delete("0/", None).await.unwrap();
    assert!(store.head("0/").await.unwrap().is_none());
    assert_eq!(
        store.get("0", None).await.unwrap(),
        "body of 0 #0".as_bytes()
    );

    // Keys no file could be without folding into another key's file are refused by the
    // check the door makes, and are absent to reads and deletes (nothing is stuck).
    let too_long_dir = format!("{}/", "m".repeat(250));
    for key in [
        "a//b",
        "a/./b",
        "a/../b",
        "/abs",
        "x.fdw-dir",
        "x.fdw-dir/y",
        "deep/.fdw-tmp/y",
        &format!("long/{longest_name}n"),
        &too_long_dir,
    ] {
        let reason = store
            .refuses_key(key)
            .unwrap_or_else(|| panic!("{key} is refused"));
        let err = refused_put(&store, key).await;
        assert!(err.message.contains(&reason), "{key}: {err} names {reason}");
        assert!(store.head(key).await.unwrap().is_none(), "{key}");
        assert_eq!(
            store.get(key, None).await.unwrap_err().kind,
            FailureKind::NotFound
        );
        store.delete(key, None).await.unwrap();
    }
}
