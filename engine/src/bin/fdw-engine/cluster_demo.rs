//! The main job: a three-worker cluster on loopback, written to and read from through
//! the SDK, with acknowledgement latency percentiles.

use std::time::Duration;

use anyhow::{Context, ensure};
use bytesize::ByteSize;
use fdw_client::{Client, ClientConfig, Replication, WriteType};
use fdw_engine::{LocalCluster, PoolConfig};
use fdw_persist::UnderStoreLocation;
use hdrhistogram::Histogram;
use tokio::time::Instant;

pub(crate) struct Settings {
    pub(crate) nodes: u16,
    pub(crate) pool_size_bytes: usize,
    pub(crate) chunk_size_bytes: usize,
    pub(crate) replicas: u8,
    pub(crate) quorum: u8,
    pub(crate) objects: usize,
    pub(crate) seed: u64,
    /// Where to persist; `None` for a temporary directory.
    pub(crate) under_store: Option<std::path::PathBuf>,
}

/// Object sizes written, each `objects / SIZES.len()` times.
const SIZES: [usize; 4] = [4 << 10, 64 << 10, 1 << 20, 4 << 20];

fn object(seed: u64, n: usize, len: usize) -> Vec<u8> {
    let mut x = (seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Latency histograms and byte totals per object size.
struct Latencies {
    by_size: Vec<(Histogram<u64>, u64, Duration)>,
}

impl Latencies {
    fn new() -> anyhow::Result<Self> {
        // Microseconds, 1 µs to 100 s, 3 significant digits.
        let by_size = SIZES
            .iter()
            .map(|_| {
                Ok((
                    Histogram::new_with_bounds(1, 100_000_000, 3)?,
                    0,
                    Duration::ZERO,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { by_size })
    }

    fn record(&mut self, size: usize, len: usize, elapsed: Duration) -> anyhow::Result<()> {
        let (hist, bytes, total) = &mut self.by_size[size];
        hist.record(elapsed.as_micros().max(1) as u64)?;
        *bytes += len as u64;
        *total += elapsed;
        Ok(())
    }

    fn print(&self, title: &str) {
        println!("\n{title}");
        println!(
            "  {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14}",
            "size", "count", "p50", "p90", "p99", "p99.9", "max", "throughput"
        );
        for (len, (h, bytes, elapsed)) in SIZES.iter().zip(&self.by_size) {
            let us = |q: f64| Duration::from_micros(h.value_at_quantile(q));
            println!(
                "  {:>8} {:>6} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?} {:>12}/s",
                ByteSize(*len as u64).to_string(),
                h.len(),
                us(0.5),
                us(0.9),
                us(0.99),
                us(0.999),
                Duration::from_micros(h.max()),
                ByteSize((*bytes as f64 / elapsed.as_secs_f64().max(1e-9)) as u64),
            );
        }
    }
}

pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    println!(
        "fdw-engine: local cluster of {} workers on loopback, R={} W={}, seed {}",
        settings.nodes, settings.replicas, settings.quorum, settings.seed
    );
    let pool = PoolConfig {
        size_bytes: settings.pool_size_bytes,
        chunk_size_bytes: settings.chunk_size_bytes,
        ..PoolConfig::default()
    };
    let (under_store, temporary) = match &settings.under_store {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("fdw-demo-under-store-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&under_store)
        .with_context(|| format!("create {}", under_store.display()))?;
    let under_store = under_store.canonicalize()?;
    let location: UnderStoreLocation = format!("file://{}", under_store.display())
        .parse()
        .context("under-store location")?;
    println!("  persisting to {location} (the embedded default under-store)");
    let cluster = LocalCluster::start(settings.nodes, pool, |c| {
        c.persist.default_location = Some(location.clone());
    })
    .await
    .context("start the local cluster")?;
    for member in cluster.members() {
        let node = cluster.node(member.id).context("node just started")?;
        println!(
            "  {} at {}: {} pool, {}",
            member.name,
            node.addr(),
            ByteSize(settings.pool_size_bytes as u64),
            node.store().pool().backing()
        );
    }
    let mut config = ClientConfig::new(cluster.members().to_vec());
    config.replication = Replication {
        write_type: WriteType::AsyncThrough,
        replicas: settings.replicas,
        quorum: settings.quorum,
    };
    let client = Client::connect(config, &cluster.client_identity("demo-client")?)
        .await
        .context("connect the client")?;

    let per_size = settings.objects.div_ceil(SIZES.len());
    let keys: Vec<(String, usize, usize)> = (0..per_size)
        .flat_map(|i| {
            SIZES
                .iter()
                .enumerate()
                .map(move |(s, &len)| (format!("demo/{len}/{i:04}"), s, len))
        })
        .collect();

    let mut puts = Latencies::new()?;
    for (n, (key, s, len)) in keys.iter().enumerate() {
        let data = object(settings.seed, n, *len);
        let started = Instant::now();
        let receipt = client
            .put("demo", key, &data)
            .await
            .with_context(|| format!("put {key}"))?;
        puts.record(*s, *len, started.elapsed())?;
        ensure!(
            receipt.crc == crc32fast::hash(&data),
            "{key}: acknowledged CRC differs"
        );
    }
    puts.print("put: acknowledged once W replicas hold the whole object in memory");

    let started = Instant::now();
    let drained = wait_drained(&client, Duration::from_secs(120)).await;
    ensure!(drained, "the persist backlog did not drain within 120 s");
    let drain = started.elapsed();
    // Every object is in the under-store, byte for byte (buckets without a location of
    // their own sit under the default, in a directory named after the bucket).
    let mut bytes = 0u64;
    for (n, (key, _, len)) in keys.iter().enumerate() {
        let path = under_store.join("demo").join(key);
        let stored = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        ensure!(
            stored == object(settings.seed, n, *len),
            "{} differs from what was written",
            path.display()
        );
        bytes += stored.len() as u64;
    }
    println!(
        "persisted: all {} objects ({}) in {} byte-identical, {:.0?} after the last put \
         was acknowledged",
        keys.len(),
        ByteSize(bytes),
        under_store.display(),
        drain
    );

    let mut gets = Latencies::new()?;
    for (n, (key, s, len)) in keys.iter().enumerate() {
        let started = Instant::now();
        let read = client
            .get("demo", key)
            .await
            .with_context(|| format!("get {key}"))?;
        gets.record(*s, *len, started.elapsed())?;
        ensure!(
            read == object(settings.seed, n, *len),
            "{key} read back different bytes"
        );
    }
    gets.print("get: every frame's CRC and the whole object's checked by the client");
    println!("\nall {} objects read back byte-identical", keys.len());

    println!("\ncluster status:");
    for (member, status) in client.status().await {
        match status {
            Ok(s) => println!(
                "  {}: up, pinned {} (unpersisted), evictable {}, backlog {} objects, \
                 {} uploads done, {} failed attempts",
                member.name,
                ByteSize(s.pinned_bytes),
                ByteSize(s.evictable_bytes),
                s.backlog_objects,
                s.uploads_done,
                s.upload_failures
            ),
            Err(err) => println!("  {}: {err}", member.name),
        }
    }
    cluster.shutdown().await;
    if temporary {
        std::fs::remove_dir_all(&under_store)?;
    }
    Ok(())
}

/// Waits until no node has anything left to persist.
async fn wait_drained(client: &Client, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let statuses = client.status().await;
        if statuses
            .iter()
            .all(|(_, s)| s.as_ref().is_ok_and(|s| s.backlog_objects == 0))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
