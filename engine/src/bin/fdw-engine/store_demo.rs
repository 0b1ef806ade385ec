//! The local demo: the memory pool and object store doing their jobs, step by step.

use std::time::Duration;

use anyhow::{Context, ensure};
use bytesize::ByteSize;
use fdw_engine::{
    HugePagePolicy, ObjectId, ObjectStore, Pool, PoolConfig, StoreConfig, StoreError, StoreStats,
};
use fdw_net::{BucketName, ObjectKey, Version, WriteType};
use tokio::time::Instant;

pub(crate) struct Settings {
    pub(crate) pool_size_bytes: usize,
    pub(crate) chunk_size_bytes: usize,
    pub(crate) huge_pages: HugePagePolicy,
    pub(crate) lock: bool,
    pub(crate) objects: usize,
    pub(crate) seed: u64,
}

/// Object sizes in the demo: small, page-sized, chunk-straddling and multi-chunk.
const SIZES: [usize; 6] = [4 << 10, 60 << 10, 64 << 10, 100 << 10, 512 << 10, 1 << 20];

/// splitmix64: reproducible sizes and contents from the seed, no dependency needed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn object_bytes(seed: u64, n: usize) -> Vec<u8> {
    let h = mix(seed ^ (n as u64).wrapping_mul(0x1000_0000_01B3));
    let len = SIZES[(h % SIZES.len() as u64) as usize] + (h >> 32) as usize % 1000;
    let mut state = h;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = mix(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn id(bucket: &BucketName, n: usize) -> anyhow::Result<ObjectId> {
    Ok(ObjectId {
        bucket: bucket.clone(),
        key: ObjectKey::new(format!("part-{n:05}.parquet"))?,
        version: Version(1),
    })
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    format!(
        "{}/s",
        ByteSize((bytes as f64 / elapsed.as_secs_f64().max(1e-9)) as u64)
    )
}

/// Writes objects `range`, returning how many bytes and the time spent in the store
/// (generating the bytes is not timed). With `persist`, each object is also taken
/// through the persist states as soon as it is written.
async fn write_objects(
    store: &ObjectStore,
    bucket: &BucketName,
    seed: u64,
    range: std::ops::Range<usize>,
    persist: bool,
) -> anyhow::Result<(u64, Duration)> {
    let (mut total, mut elapsed) = (0, Duration::ZERO);
    for n in range {
        let data = object_bytes(seed, n);
        let object = id(bucket, n)?;
        let started = Instant::now();
        store
            .put(object.clone(), WriteType::AsyncThrough, &data)
            .await
            .with_context(|| format!("write object {n}"))?;
        elapsed += started.elapsed();
        total += data.len() as u64;
        if persist {
            store.start_persist(&object)?;
            store.finish_persist(&object)?;
        }
    }
    Ok((total, elapsed))
}

/// Reads back every object of `range` still in memory and checks bytes and CRC.
/// Returns objects found, bytes read and the time spent in the store's reads.
fn verify_objects(
    store: &ObjectStore,
    bucket: &BucketName,
    seed: u64,
    range: std::ops::Range<usize>,
) -> anyhow::Result<(usize, u64, Duration)> {
    let (mut found, mut bytes, mut elapsed) = (0, 0, Duration::ZERO);
    for n in range {
        let started = Instant::now();
        let Ok(reader) = store.get(bucket, &id(bucket, n)?.key) else {
            continue;
        };
        let read = reader
            .read_all()
            .with_context(|| format!("read object {n}"))?;
        elapsed += started.elapsed();
        let expected = object_bytes(seed, n);
        ensure!(read == expected, "object {n} read back different bytes");
        ensure!(
            reader.meta().crc == crc32fast::hash(&expected),
            "object {n} has the wrong CRC"
        );
        found += 1;
        bytes += read.len() as u64;
    }
    Ok((found, bytes, elapsed))
}

fn print_stats(stats: &StoreStats) {
    let chunk = stats.pool.chunk_size_bytes as u64;
    println!(
        "      pool        {} chunks of {}, {} free",
        stats.pool.chunks_total,
        ByteSize(chunk),
        stats.pool.chunks_free
    );
    println!(
        "      pinned      {} of the {} unpersisted limit",
        ByteSize(stats.pinned_bytes),
        ByteSize(stats.unpersisted_limit_bytes)
    );
    println!(
        "      evictable   {} in {} cached objects",
        ByteSize(stats.evictable_bytes),
        stats.cached_objects
    );
    println!(
        "      backlog     {} objects, {}, oldest {}",
        stats.backlog_objects,
        ByteSize(stats.backlog_bytes),
        stats
            .oldest_unpersisted_age
            .map_or("-".into(), |a| format!("{a:.1?}"))
    );
    println!("      evictions   {}", stats.evictions);
}

pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let seed = settings.seed;
    println!(
        "fdw-engine store-demo: the memory pool and object store on their own (seed {seed})\n"
    );

    let started = Instant::now();
    let pool = Pool::new(&PoolConfig {
        size_bytes: settings.pool_size_bytes,
        chunk_size_bytes: settings.chunk_size_bytes,
        huge_pages: settings.huge_pages,
        populate: true,
        lock: settings.lock,
    })
    .context("map the memory pool")?;
    let view = pool.kernel_view().context("read /proc/self/smaps")?;
    println!(
        "1. pool: {} mapped and faulted in {:.1?}, backing: {}",
        ByteSize(settings.pool_size_bytes as u64),
        started.elapsed(),
        pool.backing()
    );
    println!(
        "      kernel says: page size {} KiB, hugetlb {} KiB, transparent huge {} KiB, locked {} KiB",
        view.kernel_page_size_kib, view.hugetlb_kib, view.anon_huge_pages_kib, view.locked_kib
    );

    let mut config = StoreConfig::for_pool(settings.pool_size_bytes as u64);
    config.backpressure_timeout = Duration::from_secs(2);
    let store = ObjectStore::new(pool, config).context("create the object store")?;
    let bucket = BucketName::new("stage-1")?;

    let first = 0..settings.objects;
    let (written, elapsed) = write_objects(&store, &bucket, seed, first.clone(), false).await?;
    println!(
        "\n2. wrote {} objects ({}) as ASYNC_THROUGH in {elapsed:.1?} ({}); each chunk CRC32'd as it landed",
        first.len(),
        ByteSize(written),
        rate(written, elapsed)
    );
    print_stats(&store.stats());

    let (found, read, elapsed) = verify_objects(&store, &bucket, seed, first.clone())?;
    ensure!(
        found == first.len(),
        "only {found} of {} objects read back",
        first.len()
    );
    println!(
        "\n3. read all {found} back ({}) in {elapsed:.1?} ({}): byte-identical, every chunk CRC-verified",
        ByteSize(read),
        rate(read, elapsed)
    );

    // No under-store exists yet (the persist pipeline comes with the persist work), so
    // the demo drives the state transitions the pipeline will: oldest first, from the
    // store's own persist FIFO.
    let to_persist = store.persist_queue(first.len() * 3 / 4);
    for object in &to_persist {
        store.start_persist(&object.id)?;
        store.finish_persist(&object.id)?;
    }
    println!(
        "\n4. marked the oldest {} objects persisted (committed → persisting → persisted) as the persist\n   \
         pipeline will once it exists; their memory is now evictable",
        to_persist.len()
    );
    print_stats(&store.stats());

    // Round 2: as much again as the whole pool, each object persisted as soon as it is
    // written (a pipeline keeping up), so the pool fills with evictable data and must
    // evict to keep accepting writes.
    let unpersisted: Vec<usize> = first.clone().skip(to_persist.len()).collect();
    let (mut written, mut n) = (0, settings.objects);
    while written < settings.pool_size_bytes as u64 {
        written += write_objects(&store, &bucket, seed, n..n + 1, true)
            .await?
            .0;
        n += 1;
    }
    let second = settings.objects..n;
    let stats = store.stats();
    println!(
        "\n5. wrote {} more objects ({}, the pool's size), each persisted as it landed: {} persisted objects\n   \
         were evicted, least recently used first, to make room",
        second.len(),
        ByteSize(written),
        stats.evictions
    );
    for &n in &unpersisted {
        store
            .get(&bucket, &id(&bucket, n)?.key)
            .with_context(|| format!("unpersisted object {n} was evicted"))?;
    }
    let (cached, _, _) = verify_objects(&store, &bucket, seed, 0..second.end)?;
    println!(
        "      all {} unpersisted objects of round 1 are still in memory; {cached} objects in memory verified",
        unpersisted.len()
    );
    print_stats(&stats);

    let started = Instant::now();
    let mut n = second.end;
    let refusal = loop {
        match store
            .put(
                id(&bucket, n)?,
                WriteType::AsyncThrough,
                &object_bytes(seed, n),
            )
            .await
        {
            Ok(_) => n += 1,
            Err(err @ StoreError::Backpressure { .. }) => break err,
            Err(other) => return Err(other).context("fill memory"),
        }
    };
    println!(
        "\n6. kept writing with nothing persisting: {} more writes fit, then one waited and was refused after {:.1?}:\n   {refusal}",
        n - second.end,
        started.elapsed()
    );
    print_stats(&store.stats());
    println!("\nno acknowledged object was lost: unpersisted data is never evicted.");
    Ok(())
}
