//! Store behaviour: write/read equality, checksums, states, eviction, backpressure.

use std::collections::HashMap;
use std::time::Duration;

use fdw_net::{BucketName, ObjectKey, Version, WriteType};
use proptest::prelude::*;

use super::*;
use crate::pool::{HugePagePolicy, Pool, PoolConfig};

const CHUNK: usize = 4096;

fn store_with(pool_chunks: usize, limit_chunks: usize, timeout: Duration) -> ObjectStore {
    let pool = Pool::new(&PoolConfig {
        size_bytes: pool_chunks * CHUNK,
        chunk_size_bytes: CHUNK,
        huge_pages: HugePagePolicy::Off,
        populate: false,
        lock: false,
    })
    .unwrap();
    let limit = (limit_chunks * CHUNK) as u64;
    ObjectStore::new(
        pool,
        StoreConfig {
            unpersisted_limit_bytes: limit,
            max_object_bytes: limit,
            backpressure_timeout: timeout,
        },
    )
    .unwrap()
}

fn store(pool_chunks: usize, limit_chunks: usize) -> ObjectStore {
    store_with(pool_chunks, limit_chunks, Duration::from_secs(1))
}

fn bucket() -> BucketName {
    BucketName::new("stage-1").unwrap()
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(name).unwrap()
}

fn id(name: &str, version: u64) -> ObjectId {
    ObjectId {
        bucket: bucket(),
        key: key(name),
        version: Version(version),
    }
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

async fn put(
    store: &ObjectStore,
    name: &str,
    version: u64,
    data: &[u8],
) -> Result<ObjectMeta, StoreError> {
    store
        .put(id(name, version), WriteType::AsyncThrough, data)
        .await
}

/// Reads an evicted object back in from `data`, in uneven pieces as a network delivers.
async fn refill(
    store: &ObjectStore,
    evicted: ObjectMeta,
    data: &[u8],
) -> Result<ObjectReader, StoreError> {
    let mut refill = store.refill(evicted)?;
    for piece in data.chunks(CHUNK / 3 + 1) {
        refill.write(piece).await?;
    }
    refill.finish()
}

fn evicted(store: &ObjectStore, name: &str) -> ObjectMeta {
    match store.get(&bucket(), &key(name)) {
        Err(StoreError::Evicted(meta)) => meta,
        Err(other) => panic!("{name} is not evicted: {other}"),
        Ok(_) => panic!("{name} is not evicted: it is in memory"),
    }
}

fn persist(store: &ObjectStore, id: &ObjectId) {
    store.start_persist(id).unwrap();
    store.finish_persist(id).unwrap();
}

/// Commits `n` one-chunk objects `k0..` that nothing persists.
async fn fill_unpersisted(store: &ObjectStore, n: usize) {
    for i in 0..n {
        put(store, &format!("k{i}"), 1, &bytes(CHUNK, 0))
            .await
            .unwrap();
    }
}

/// Memory accounting equals what the index holds: every pinned byte belongs to an
/// unpersisted object and nothing leaked.
fn assert_quiescent_accounting(store: &ObjectStore) {
    let stats = store.stats();
    let used = (stats.pool.chunks_total as usize - stats.pool.chunks_free) * CHUNK;
    assert_eq!(
        stats.pinned_bytes + stats.evictable_bytes,
        used as u64,
        "accounting matches the pool: {stats:?}"
    );
}

#[test]
fn boundary_sizes_read_back_identical() {
    let rt = paused_runtime();
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 17] {
        let store = store(16, 16);
        let data = bytes(len, 3);
        let meta = rt.block_on(put(&store, "k", 1, &data)).unwrap();
        assert_eq!(
            (meta.len, meta.crc, meta.state),
            (len as u64, crc32fast::hash(&data), ObjectState::Committed)
        );
        assert_eq!(
            store.get(&bucket(), &key("k")).unwrap().read_all().unwrap(),
            data,
            "len {len}"
        );
        assert_quiescent_accounting(&store);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any size, written in any split, reads back identical, whole and by range, with the
    /// whole-object CRC of the bytes.
    #[test]
    fn write_read_equality(
        len in prop_oneof![Just(0usize), Just(1), Just(CHUNK - 1), Just(CHUNK), Just(CHUNK + 1), 0..40 * CHUNK],
        pieces in proptest::collection::vec(1usize..3 * CHUNK, 1..8),
        seed in any::<u8>(),
        range in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
    ) {
        let rt = paused_runtime();
        let store = store(48, 48);
        let data = bytes(len, seed);
        let reader = rt.block_on(async {
            let mut writer = store.writer(id("obj", 1), WriteType::AsyncThrough).unwrap();
            let mut rest = &data[..];
            for piece in pieces.iter().cycle() {
                if rest.is_empty() { break; }
                let n = (*piece).min(rest.len());
                writer.write(&rest[..n]).await.unwrap();
                rest = &rest[n..];
            }
            writer.commit().unwrap();
            store.get(&bucket(), &key("obj")).unwrap()
        });
        prop_assert_eq!(reader.meta().crc, crc32fast::hash(&data));
        prop_assert_eq!(&reader.read_all().unwrap(), &data);
        let (a, b) = (range.0.index(len + 1), range.1.index(len + 1));
        let (start, end) = (a.min(b), a.max(b));
        prop_assert_eq!(&reader.read_range(start as u64..end as u64).unwrap()[..], &data[start..end]);
        let streamed: Vec<u8> = reader.verified_chunks().map(|c| c.unwrap().0.to_vec()).collect::<Vec<_>>().concat();
        prop_assert_eq!(streamed, data);
    }
}

#[test]
fn a_corrupted_chunk_fails_the_read_and_never_returns_bytes() {
    let rt = paused_runtime();
    let store = store(16, 16);
    let data = bytes(3 * CHUNK, 9);
    rt.block_on(put(&store, "k", 1, &data)).unwrap();
    let reader = store.get(&bucket(), &key("k")).unwrap();
    reader.corrupt(1, 100);
    let err = reader.read_all().unwrap_err();
    assert!(
        matches!(err, StoreError::ChecksumMismatch { chunk: Some(1), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chunk 1 of stage-1/k@v1"), "{err}");
    // Ranges that avoid the bad chunk still read; any range touching it fails.
    assert_eq!(reader.read_range(0..CHUNK as u64).unwrap(), data[..CHUNK]);
    assert!(
        reader
            .read_range(CHUNK as u64 + 200..CHUNK as u64 + 201)
            .is_err()
    );
    assert!(reader.verified_chunks().nth(1).unwrap().is_err());
}

#[test]
fn a_wrong_client_checksum_discards_the_object() {
    let rt = paused_runtime();
    let store = store(16, 16);
    let data = bytes(2 * CHUNK + 5, 1);
    let err = rt.block_on(async {
        let mut writer = store.writer(id("k", 1), WriteType::AsyncThrough).unwrap();
        writer.write(&data).await.unwrap();
        writer
            .commit_expecting(crc32fast::hash(&data) ^ 1)
            .unwrap_err()
    });
    assert!(
        matches!(err, StoreError::ChecksumMismatch { chunk: None, .. }),
        "{err}"
    );
    assert!(matches!(
        store.get(&bucket(), &key("k")),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.stats().pinned_bytes, 0);
    assert_eq!(store.stats().pool.chunks_free, 16);
    // The right checksum commits.
    let meta = rt.block_on(async {
        let mut writer = store.writer(id("k", 1), WriteType::AsyncThrough).unwrap();
        writer.write(&data).await.unwrap();
        writer.commit_expecting(crc32fast::hash(&data)).unwrap()
    });
    assert_eq!(meta.len, data.len() as u64);
}

#[test]
fn an_abandoned_writer_returns_its_memory() {
    let rt = paused_runtime();
    let store = store(16, 16);
    rt.block_on(async {
        let mut writer = store.writer(id("k", 1), WriteType::AsyncThrough).unwrap();
        writer.write(&bytes(3 * CHUNK, 0)).await.unwrap();
        assert_eq!(store.stats().pinned_bytes, 3 * CHUNK as u64);
    });
    assert_eq!(store.stats().pinned_bytes, 0);
    assert_eq!(store.stats().pool.chunks_free, 16);
    assert!(
        store.get(&bucket(), &key("k")).is_err(),
        "an uncommitted object is never visible"
    );
}

#[test]
fn persisted_objects_are_evicted_least_recently_used_first() {
    let rt = paused_runtime();
    let store = store(8, 8);
    rt.block_on(async {
        for name in ["a", "b", "c"] {
            put(&store, name, 1, &bytes(CHUNK, 1)).await.unwrap();
            persist(&store, &id(name, 1));
        }
        // Touch "a": "b" becomes the least recently used.
        store.get(&bucket(), &key("a")).unwrap();
        for i in 0..5 {
            put(&store, &format!("pinned-{i}"), 1, &bytes(CHUNK, 2))
                .await
                .unwrap();
        }
        assert_eq!(store.stats().pool.chunks_free, 0);
        put(&store, "d", 1, &bytes(CHUNK, 3)).await.unwrap();
        assert!(
            matches!(store.get(&bucket(), &key("b")), Err(StoreError::Evicted(_))),
            "b was least recently used"
        );
        // Reading promotes: read c, then a, so c is again the least recently used.
        assert!(store.get(&bucket(), &key("c")).is_ok() && store.get(&bucket(), &key("a")).is_ok());
        put(&store, "e", 1, &bytes(CHUNK, 4)).await.unwrap();
        assert!(
            matches!(store.get(&bucket(), &key("c")), Err(StoreError::Evicted(_))),
            "then c"
        );
        assert_eq!(store.stats().evictions, 2);
    });
    assert_quiescent_accounting(&store);
}

#[test]
fn full_of_unpersisted_data_writes_wait_then_fail_naming_the_backlog() {
    let rt = paused_runtime();
    let store = store_with(8, 4, Duration::from_secs(5));
    rt.block_on(async {
        fill_unpersisted(&store, 4).await;
        tokio::time::advance(Duration::from_secs(7)).await;
        let started = tokio::time::Instant::now();
        let err = put(&store, "late", 1, &bytes(1, 0)).await.unwrap_err();
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "waits exactly the configured timeout"
        );
        match &err {
            StoreError::Backpressure {
                limit_bytes,
                pinned_bytes,
                backlog_objects,
                oldest_unpersisted_age,
                ..
            } => {
                assert_eq!(
                    (*limit_bytes, *pinned_bytes, *backlog_objects),
                    (4 * CHUNK as u64, 4 * CHUNK as u64, 4)
                );
                assert_eq!(*oldest_unpersisted_age, Some(Duration::from_secs(12)));
            }
            other => panic!("expected backpressure, got {other}"),
        }
        let message = err.to_string();
        for needle in [
            "unpersisted_limit_bytes",
            "persist backlog: 4 objects",
            "waiting 5s",
        ] {
            assert!(
                message.contains(needle),
                "{needle:?} missing from: {message}"
            );
        }
        assert_eq!(
            store.stats().pinned_bytes,
            4 * CHUNK as u64,
            "the failed write pinned nothing"
        );
    });
}

#[test]
fn a_waiting_write_proceeds_when_the_backlog_drains() {
    let rt = paused_runtime();
    let store = store_with(8, 4, Duration::from_secs(5));
    rt.block_on(async {
        fill_unpersisted(&store, 4).await;
        let waiting = {
            let store = store.clone();
            tokio::spawn(async move { put(&store, "late", 1, &bytes(CHUNK, 5)).await })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !waiting.is_finished(),
            "the write waits while memory is full"
        );
        persist(&store, &id("k0", 1));
        let meta = waiting.await.unwrap().unwrap();
        assert_eq!(meta.id, id("late", 1));
    });
}

#[test]
fn objects_over_a_limit_are_refused_at_once_naming_it() {
    let rt = paused_runtime();
    let store = store(8, 4);
    let err = rt
        .block_on(put(&store, "big", 1, &bytes(4 * CHUNK + 1, 0)))
        .unwrap_err();
    assert!(err.to_string().contains("max_object_bytes"), "{err}");
    assert_eq!(store.stats().pinned_bytes, 0);
}

#[test]
fn the_newest_version_wins_and_older_ones_are_released() {
    let rt = paused_runtime();
    let store = store(16, 16);
    rt.block_on(async {
        put(&store, "k", 1, &bytes(2 * CHUNK, 1)).await.unwrap();
        put(&store, "k", 2, &bytes(CHUNK, 2)).await.unwrap();
    });
    assert_eq!(
        store.head(&bucket(), &key("k")).unwrap().id.version,
        Version(2)
    );
    assert_eq!(store.stats().pinned_bytes, CHUNK as u64, "v1 is released");
    assert_eq!(
        queued(&store, 10),
        vec![id("k", 2)],
        "only the newest needs persisting"
    );
    let stale = rt.block_on(put(&store, "k", 2, b"again")).unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::StaleVersion {
                newest: Version(2),
                ..
            }
        ),
        "{stale}"
    );
    assert!(store.writer(id("k", 1), WriteType::AsyncThrough).is_err());
}

#[test]
fn a_superseded_version_stays_until_its_upload_ends() {
    let rt = paused_runtime();
    let store = store(16, 16);
    rt.block_on(put(&store, "k", 1, &bytes(CHUNK, 1))).unwrap();
    let upload = store.start_persist(&id("k", 1)).unwrap().unwrap();
    rt.block_on(put(&store, "k", 2, &bytes(CHUNK, 2))).unwrap();
    assert_eq!(
        store.get(&bucket(), &key("k")).unwrap().meta().id.version,
        Version(2)
    );
    assert_eq!(
        upload.read_all().unwrap(),
        bytes(CHUNK, 1),
        "the upload still reads v1"
    );
    assert!(store.get_version(&id("k", 1)).is_ok());
    store.finish_persist(&id("k", 1)).unwrap();
    assert!(
        store.get_version(&id("k", 1)).is_err(),
        "v1 dropped once uploaded"
    );
    assert_eq!(
        store.stats().cached_objects,
        0,
        "a superseded version is not cached"
    );
    drop(upload);
    assert_quiescent_accounting(&store);
}

#[test]
fn a_tombstone_hides_the_key_and_is_persisted_as_a_delete() {
    let rt = paused_runtime();
    let store = store(16, 16);
    rt.block_on(put(&store, "k", 1, &bytes(CHUNK, 1))).unwrap();
    persist(&store, &id("k", 1));
    store
        .delete(id("k", 2), WriteType::AsyncThrough, Role::Primary, 1)
        .unwrap();
    assert!(matches!(
        store.head(&bucket(), &key("k")),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.stats().evictable_bytes,
        0,
        "the deleted version's memory is released"
    );
    assert_eq!(queued(&store, 10), vec![id("k", 2)]);
    assert!(
        store.start_persist(&id("k", 2)).unwrap().is_none(),
        "a tombstone uploads as a delete"
    );
    store.finish_persist(&id("k", 2)).unwrap();
    assert_eq!(store.stats().backlog_objects, 0);
    // The key is gone entirely; a new write starts afresh.
    rt.block_on(put(&store, "k", 1, b"new life")).unwrap();
    assert_quiescent_accounting(&store);
}

#[test]
fn must_cache_objects_are_never_persisted_nor_evicted() {
    let rt = paused_runtime();
    let store = store(4, 4);
    rt.block_on(store.put(id("mem", 1), WriteType::MustCache, &bytes(CHUNK, 1)))
        .unwrap();
    assert!(queued(&store, 10).is_empty());
    assert!(matches!(
        store.start_persist(&id("mem", 1)),
        Err(StoreError::NotPersistable(_))
    ));
    assert_eq!(store.stats().pinned_bytes, CHUNK as u64);
    assert_eq!(
        store.stats().backlog_objects,
        0,
        "memory-only data is no persist backlog"
    );
}

#[test]
fn state_transitions_are_checked() {
    let rt = paused_runtime();
    let store = store(4, 4);
    rt.block_on(put(&store, "k", 1, b"x")).unwrap();
    let finish = store.finish_persist(&id("k", 1)).unwrap_err();
    assert!(
        finish
            .to_string()
            .contains("cannot finish persisting stage-1/k@v1: it is committed"),
        "{finish}"
    );
    store.start_persist(&id("k", 1)).unwrap();
    assert!(matches!(
        store.start_persist(&id("k", 1)),
        Err(StoreError::InvalidState { .. })
    ));
    store.fail_persist(&id("k", 1)).unwrap();
    assert_eq!(
        store.head(&bucket(), &key("k")).unwrap().state,
        ObjectState::Committed
    );
    assert_eq!(
        queued(&store, 1),
        vec![id("k", 1)],
        "a failed upload is queued again"
    );
    assert!(matches!(
        store.start_persist(&id("nope", 1)),
        Err(StoreError::VersionNotFound(_))
    ));
}

#[test]
fn the_backlog_is_visible() {
    let rt = paused_runtime();
    let store = store(16, 16);
    rt.block_on(async {
        put(&store, "old", 1, &bytes(10, 0)).await.unwrap();
        tokio::time::advance(Duration::from_secs(3)).await;
        put(&store, "new", 1, &bytes(CHUNK + 1, 0)).await.unwrap();
    });
    // Inside the runtime, so the store reads the same (paused) clock it committed with.
    let stats = rt.block_on(async { store.stats() });
    assert_eq!(
        (stats.backlog_objects, stats.backlog_bytes),
        (2, CHUNK as u64 + 11)
    );
    assert_eq!(stats.oldest_unpersisted_age, Some(Duration::from_secs(3)));
    assert_eq!(stats.pinned_bytes, 3 * CHUNK as u64);
    assert_eq!(
        queued(&store, 10),
        vec![id("old", 1), id("new", 1)],
        "FIFO in commit order"
    );
}

#[test]
fn config_is_checked() {
    let pool = Pool::new(&PoolConfig {
        size_bytes: 4 * CHUNK,
        chunk_size_bytes: CHUNK,
        huge_pages: HugePagePolicy::Off,
        populate: false,
        lock: false,
    })
    .unwrap();
    let too_big = StoreConfig::for_pool(8 * CHUNK as u64);
    assert!(matches!(
        ObjectStore::new(pool, too_big),
        Err(StoreError::InvalidConfig(_))
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, chunks: u8 },
    StartPersist { key: u8 },
    FinishPersist { key: u8 },
    FailPersist { key: u8 },
    Read { key: u8 },
    Delete { key: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..12u8, 0..4u8).prop_map(|(key, chunks)| Op::Put { key, chunks }),
        3 => (0..12u8).prop_map(|key| Op::StartPersist { key }),
        3 => (0..12u8).prop_map(|key| Op::FinishPersist { key }),
        1 => (0..12u8).prop_map(|key| Op::FailPersist { key }),
        2 => (0..12u8).prop_map(|key| Op::Read { key }),
        1 => (0..12u8).prop_map(|key| Op::Delete { key }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Invariant 4 under any interleaving of writes, uploads, reads and deletes with
    /// heavy eviction pressure: every object that is not persisted is still in memory,
    /// byte-identical; the accounting matches the pool; and nothing persisted is ever
    /// served stale.
    #[test]
    fn unpersisted_data_survives_any_eviction_pressure(ops in proptest::collection::vec(op(), 1..120)) {
        let rt = paused_runtime();
        let store = store_with(12, 8, Duration::from_millis(10));
        // The model: the newest version of each key, its bytes, and whether persisted.
        let mut model: HashMap<u8, (u64, Option<Vec<u8>>, bool)> = HashMap::new();
        let mut next_version = 1u64;
        for op in ops {
            match op {
                Op::Put { key: k, chunks } => {
                    let data = bytes(chunks as usize * CHUNK + k as usize, k);
                    let version = next_version;
                    next_version += 1;
                    match rt.block_on(put(&store, &format!("k{k}"), version, &data)) {
                        Ok(_) => { model.insert(k, (version, Some(data), false)); }
                        Err(StoreError::Backpressure { .. }) => {}
                        Err(other) => prop_assert!(false, "unexpected {other}"),
                    }
                }
                Op::StartPersist { key: k } => {
                    if let Some((version, _, _)) = model.get(&k) {
                        let _ = store.start_persist(&id(&format!("k{k}"), *version));
                    }
                }
                Op::FinishPersist { key: k } => {
                    if let Some((version, _, persisted)) = model.get_mut(&k)
                        && store.finish_persist(&id(&format!("k{k}"), *version)).is_ok()
                    {
                        *persisted = true;
                    }
                }
                Op::FailPersist { key: k } => {
                    if let Some((version, _, _)) = model.get(&k) {
                        let _ = store.fail_persist(&id(&format!("k{k}"), *version));
                    }
                }
                Op::Read { key: k } => {
                    let reader = match store.get(&bucket(), &key(&format!("k{k}"))) {
                        // Read back as the node does, from the "under-store" (the model).
                        Err(StoreError::Evicted(meta)) => {
                            let (version, data, persisted) = model.get(&k).expect("evicted, so written");
                            prop_assert!(*persisted, "only persisted objects are evicted");
                            prop_assert_eq!(meta.id.version.0, *version);
                            rt.block_on(refill(&store, meta, data.as_ref().expect("not a tombstone")))
                        }
                        other => other,
                    };
                    match reader {
                        Ok(reader) => {
                            let (version, data, _) = model.get(&k).expect("the store only has what was written");
                            prop_assert_eq!(reader.meta().id.version.0, *version, "never a stale version");
                            prop_assert_eq!(Some(reader.read_all().unwrap()), data.clone());
                        }
                        Err(StoreError::NotFound { .. } | StoreError::NoRoomToCache { .. }) => {}
                        Err(other) => prop_assert!(false, "unexpected {other}"),
                    }
                }
                Op::Delete { key: k } => {
                    let version = next_version;
                    next_version += 1;
                    store.delete(id(&format!("k{k}"), version), WriteType::AsyncThrough, Role::Primary, 1).unwrap();
                    model.insert(k, (version, None, false));
                }
            }
            for (k, (version, data, persisted)) in &model {
                if let (Some(data), false) = (data, persisted) {
                    let reader = store.get(&bucket(), &key(&format!("k{k}")));
                    prop_assert!(reader.is_ok(), "unpersisted k{}@v{} was lost", k, version);
                    prop_assert_eq!(&reader.unwrap().read_all().unwrap(), data);
                }
            }
            assert_quiescent_accounting(&store);
            prop_assert!(store.stats().pinned_bytes <= 8 * CHUNK as u64);
        }
    }
}

#[test]
fn listing_walks_keys_in_order_under_a_prefix() {
    let rt = paused_runtime();
    let store = store(16, 16);
    rt.block_on(async {
        for name in ["a/1", "a/2", "a/3", "b/1", "a0"] {
            put(&store, name, 1, b"x").await.unwrap();
        }
    });
    store
        .delete(id("a/2", 2), WriteType::AsyncThrough, Role::Primary, 1)
        .unwrap();
    let keys = |prefix, after, max| {
        store
            .list(&bucket(), prefix, after, max)
            .into_iter()
            .map(|m| m.id.key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys("a/", None, 10),
        ["a/1", "a/3"],
        "deleted keys are not listed"
    );
    assert_eq!(keys("a", None, 10), ["a/1", "a/3", "a0"]);
    assert_eq!(keys("a/", Some("a/1"), 10), ["a/3"]);
    assert_eq!(keys("", None, 2), ["a/1", "a/3"]);
    assert_eq!(keys("", Some("a0"), 10), ["b/1"]);
    assert!(keys("c", None, 10).is_empty());
    assert_eq!(
        store.newest_version(&bucket(), &key("a/2")),
        Some(Version(2))
    );
}

#[test]
fn a_frame_whose_crc_does_not_match_is_refused() {
    let rt = paused_runtime();
    let store = store(16, 16);
    let frame = bytes(CHUNK, 4);
    let err = rt.block_on(async {
        let mut writer = store.writer(id("k", 1), WriteType::AsyncThrough).unwrap();
        let buf = writer.buffer(CHUNK).await.unwrap();
        buf[..CHUNK].copy_from_slice(&frame);
        writer.advance(CHUNK);
        writer.seal_frame(crc32fast::hash(&frame)).unwrap();
        let buf = writer.buffer(CHUNK).await.unwrap();
        buf[..CHUNK].copy_from_slice(&frame);
        writer.advance(CHUNK);
        writer.seal_frame(crc32fast::hash(&frame) ^ 1).unwrap_err()
    });
    assert!(
        matches!(err, StoreError::ChecksumMismatch { chunk: Some(1), .. }),
        "{err}"
    );
    assert_eq!(
        store.stats().pinned_bytes,
        0,
        "the refused object holds no memory"
    );
    assert!(store.get(&bucket(), &key("k")).is_err());
}

/// The persist FIFO's ids.
fn queued(store: &ObjectStore, limit: usize) -> Vec<ObjectId> {
    store
        .persist_queue(limit)
        .into_iter()
        .map(|q| q.id)
        .collect()
}

#[tokio::test]
async fn replicas_wait_for_the_primary_to_say_persisted() {
    let store = store(8, 4);
    let mut writer = store.writer(id("k", 1), WriteType::AsyncThrough).unwrap();
    writer.set_role(Role::Replica { primary: 9 });
    writer.write(&[7; 1000]).await.unwrap();
    writer.commit().unwrap();
    assert!(queued(&store, 10).is_empty(), "a replica does not upload");
    assert_eq!(store.stats().backlog_objects, 1, "but it counts as backlog");
    let pinned = store.stats().pinned_bytes;
    assert!(pinned > 0);

    store.mark_persisted(&id("k", 1)).unwrap();
    store.mark_persisted(&id("k", 1)).unwrap(); // told twice: no harm
    let stats = store.stats();
    assert_eq!((stats.backlog_objects, stats.pinned_bytes), (0, 0));
    assert_eq!(stats.evictable_bytes, pinned);
    // A version that has not arrived yet is: the primary tries again later.
    assert!(matches!(
        store.mark_persisted(&id("k", 9)),
        Err(StoreError::VersionNotFound(_))
    ));
    // One superseded here meanwhile is no error.
    store
        .put(id("k", 10), WriteType::AsyncThrough, &[1; 10])
        .await
        .unwrap();
    store.mark_persisted(&id("k", 9)).unwrap();
}

#[tokio::test]
async fn a_replica_copy_can_be_taken_over_once_at_its_place_in_commit_order() {
    let store = store(8, 4);
    let replica = |name: &'static str, version| {
        let store = store.clone();
        async move {
            let mut writer = store
                .writer(id(name, version), WriteType::AsyncThrough)
                .unwrap();
            writer.set_role(Role::Replica { primary: 9 });
            writer.set_replicas(2);
            writer.write(&[7; 100]).await.unwrap();
            writer.commit().unwrap();
        }
    };
    replica("a", 1).await;
    store
        .put(id("b", 2), WriteType::AsyncThrough, &[1; 10])
        .await
        .unwrap();
    replica("c", 3).await;
    store
        .delete(
            id("d", 4),
            WriteType::AsyncThrough,
            Role::Replica { primary: 9 },
            2,
        )
        .unwrap();
    let waiting: Vec<_> = store
        .unpersisted()
        .into_iter()
        .map(|u| (u.id.key.to_string(), u.role, u.replicas, u.tombstone))
        .collect();
    let replica_of_9 = Role::Replica { primary: 9 };
    assert_eq!(
        waiting,
        [
            ("a".to_owned(), replica_of_9, 2, false),
            ("b".to_owned(), Role::Primary, 1, false),
            ("c".to_owned(), replica_of_9, 2, false),
            ("d".to_owned(), replica_of_9, 2, true),
        ]
    );
    assert_eq!(queued(&store, 10), [id("b", 2)]);

    assert!(store.take_over(&id("c", 3)));
    assert!(store.take_over(&id("a", 1)));
    assert!(!store.take_over(&id("a", 1)), "once");
    assert!(!store.take_over(&id("b", 2)), "already this node's");
    assert_eq!(
        queued(&store, 10),
        [id("a", 1), id("b", 2), id("c", 3)],
        "in commit order, not in the order taken over"
    );
    // A copy the primary persisted meanwhile is not waiting for an owner any more.
    store.mark_persisted(&id("d", 4)).unwrap();
    assert!(!store.take_over(&id("d", 4)));
    assert_eq!(store.meta_of(&id("a", 1)).unwrap().replicas, 2);
}

#[test]
fn an_evicted_object_is_read_back_checked_and_cached_again() {
    let rt = paused_runtime();
    let store = store(8, 6);
    let data = bytes(2 * CHUNK + 100, 5);
    rt.block_on(async {
        put(&store, "old", 1, &data).await.unwrap();
        persist(&store, &id("old", 1));
        fill_unpersisted(&store, 6).await; // evicts "old"
        let meta = evicted(&store, "old");
        assert_eq!(
            (meta.len, meta.crc),
            (data.len() as u64, crc32fast::hash(&data))
        );
        assert_eq!(
            store.head(&bucket(), &key("old")).unwrap(),
            meta,
            "head needs no bytes"
        );
        let listed = store.list(&bucket(), "old", None, 10);
        assert_eq!(
            listed,
            vec![meta.clone()],
            "an evicted object is still listed"
        );
        assert_quiescent_accounting(&store);

        // Memory is full of pinned data, and nothing is evictable: no room.
        assert!(matches!(
            refill(&store, meta.clone(), &data).await,
            Err(StoreError::NoRoomToCache { .. })
        ));
        for i in 0..3 {
            persist(&store, &id(&format!("k{i}"), 1));
        }
        let reader = refill(&store, meta.clone(), &data).await.unwrap();
        assert_eq!(reader.read_all().unwrap(), data);
        let cached = store.get(&bucket(), &key("old")).unwrap();
        assert_eq!(cached.read_all().unwrap(), data, "cached again");
        assert_eq!(cached.meta(), &meta);
    });
    assert_quiescent_accounting(&store);
}

#[test]
fn read_back_bytes_that_are_not_what_was_written_are_refused() {
    let rt = paused_runtime();
    let data = bytes(3 * CHUNK, 6);
    let store = store_evicting("k", &data, &rt);
    let meta = evicted(&store, "k");
    let mut flipped = data.clone();
    flipped[CHUNK + 7] ^= 1;
    let longer = [&data[..], b"!"].concat();
    for (what, wrong) in [
        ("a flipped bit", &flipped[..]),
        ("a shorter object", &data[..data.len() - 1]),
        ("a longer object", &longer[..]),
        ("nothing", &[][..]),
    ] {
        let result = rt.block_on(refill(&store, meta.clone(), wrong));
        assert!(
            matches!(result, Err(StoreError::UnderStoreMismatch { .. })),
            "{what}: {:?}",
            result.map(|r| r.meta().clone())
        );
        evicted(&store, "k"); // nothing was cached
        assert_quiescent_accounting(&store);
    }
}

/// A store where `name`, holding `data` (3 to 5 chunks), was persisted and then evicted
/// by six chunks of unpersisted data, half of which is persisted since: room to read
/// `name` back in.
fn store_evicting(name: &str, data: &[u8], rt: &tokio::runtime::Runtime) -> ObjectStore {
    let store = store(8, 6);
    rt.block_on(async {
        put(&store, name, 1, data).await.unwrap();
        persist(&store, &id(name, 1));
        fill_unpersisted(&store, 6).await;
    });
    for i in 0..3 {
        persist(&store, &id(&format!("k{i}"), 1));
    }
    store
}

#[test]
fn a_delete_or_newer_version_during_read_back_wins() {
    let rt = paused_runtime();
    let data = bytes(3 * CHUNK + 1, 7);
    for newer in ["delete", "put"] {
        let store = store_evicting("x", &data, &rt);
        let meta = evicted(&store, "x");
        let mut refill = store.refill(meta).unwrap();
        rt.block_on(refill.write(&data)).unwrap();
        match newer {
            "delete" => store
                .delete(id("x", 2), WriteType::AsyncThrough, Role::Primary, 1)
                .unwrap(),
            _ => {
                rt.block_on(put(&store, "x", 2, b"newer")).unwrap();
            }
        }
        let reader = refill.finish().unwrap();
        assert_eq!(
            reader.read_all().unwrap(),
            data,
            "{newer}: the read began first"
        );
        drop(reader);
        match store.get(&bucket(), &key("x")) {
            Ok(r) => assert_eq!((newer, r.read_all().unwrap()), ("put", b"newer".to_vec())),
            Err(err) => assert!(
                newer == "delete" && matches!(err, StoreError::NotFound { .. }),
                "{newer}: {err}"
            ),
        }
        assert_quiescent_accounting(&store);
    }
}

#[test]
fn through_writes_are_not_cached_once_persisted() {
    let rt = paused_runtime();
    let store = store(8, 8);
    let data = bytes(CHUNK * 2, 8);
    rt.block_on(async {
        store
            .put(id("k", 1), WriteType::Through, &data)
            .await
            .unwrap();
    });
    assert!(
        store.get(&bucket(), &key("k")).is_ok(),
        "in memory until persisted"
    );
    persist(&store, &id("k", 1));
    let meta = evicted(&store, "k");
    let stats = store.stats();
    assert_eq!((stats.pinned_bytes, stats.evictable_bytes), (0, 0));
    assert_eq!(stats.pool.chunks_free, 8, "its memory went back at once");
    // A read-through caches it like any other persisted object.
    rt.block_on(refill(&store, meta, &data)).unwrap();
    assert_eq!(
        store.get(&bucket(), &key("k")).unwrap().read_all().unwrap(),
        data
    );
    assert_quiescent_accounting(&store);
}
