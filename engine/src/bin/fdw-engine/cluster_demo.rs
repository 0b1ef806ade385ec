//! The main job: a three-worker cluster on loopback, written to and read from through
//! the SDK, with acknowledgement latency percentiles.

use std::time::Duration;

use anyhow::{Context, ensure};
use bytesize::ByteSize;
use fdw_client::{Client, ClientConfig, Replication, WriteType};
use fdw_engine::{HugePagePolicy, LocalCluster, PoolConfig};
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
        huge_pages: HugePagePolicy::Auto,
        populate: true,
        lock: false,
    };
    let cluster = LocalCluster::start(settings.nodes, pool, |_| {})
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
                "  {}: up, pinned {} (unpersisted), evictable {}, backlog {} objects",
                member.name,
                ByteSize(s.pinned_bytes),
                ByteSize(s.evictable_bytes),
                s.backlog_objects
            ),
            Err(err) => println!("  {}: {err}", member.name),
        }
    }
    println!("  (no under-store yet: objects stay pinned until the persist pipeline exists)");
    cluster.shutdown().await;
    Ok(())
}
