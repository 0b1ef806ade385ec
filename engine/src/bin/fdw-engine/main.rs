//! `fdw-engine`, the per-node worker daemon.
//!
//! Run with no arguments it is the local demo: it maps the memory pool, writes, reads
//! and evicts objects through the object store, and prints what it did. The cluster node
//! (QUIC replication, config file) grows out of it with the write-path work.

mod demo;

use bytesize::ByteSize;
use clap::Parser;
use fdw_engine::HugePagePolicy;
use tracing_subscriber::EnvFilter;

/// fdw worker. With no arguments: a local demo of the memory pool and object store.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Pool size (human units: 256MiB, 1GiB).
    #[arg(long, default_value = "256MiB")]
    pool_size: ByteSize,
    /// Chunk size, a multiple of 4 KiB.
    #[arg(long, default_value = "64KiB")]
    chunk_size: ByteSize,
    /// Page backing: auto (hugetlb, else THP, else plain), require, transparent or off.
    #[arg(long, default_value = "auto")]
    huge_pages: HugePagePolicy,
    /// mlock the pool.
    #[arg(long)]
    lock: bool,
    /// Objects written in the first round.
    #[arg(long, default_value_t = 300)]
    objects: usize,
    /// Seed of the object sizes and contents.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(demo::run(demo::Settings {
        pool_size_bytes: usize::try_from(args.pool_size.as_u64())?,
        chunk_size_bytes: usize::try_from(args.chunk_size.as_u64())?,
        huge_pages: args.huge_pages,
        lock: args.lock,
        objects: args.objects,
        seed: args.seed,
    }))
}
