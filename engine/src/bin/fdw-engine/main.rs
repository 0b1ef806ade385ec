//! `fdw-engine`, the per-node worker daemon.
//!
//! With no arguments it runs the main job: a local three-worker cluster on loopback,
//! written to and read from through the SDK, printing acknowledgement latencies.
//! With `--config PATH` it runs one node of a real cluster. `certs` writes a cluster CA
//! and certificates; `store-demo` walks through the memory pool and object store alone.

mod cluster_demo;
mod run_node;
mod serve_local;
mod store_demo;

use std::net::SocketAddr;
use std::path::PathBuf;

use bytesize::ByteSize;
use clap::{Parser, Subcommand};
use fdw_engine::HugePagePolicy;
use fdw_net::WriteType;
use tracing_subscriber::EnvFilter;

/// fdw worker. With no subcommand: a local three-worker cluster demo.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run one node of a real cluster from this TOML file (see `fdw_engine::config`).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Objects written by the cluster demo.
    #[arg(long, default_value_t = 200)]
    objects: usize,
    /// Pool size per worker (human units: 256MiB, 1GiB).
    #[arg(long, default_value = "256MiB")]
    pool_size: ByteSize,
    /// Chunk size, a multiple of 4 KiB.
    #[arg(long, default_value = "64KiB")]
    chunk_size: ByteSize,
    /// Replicas per object.
    #[arg(long, default_value_t = 2)]
    replicas: u8,
    /// Replicas that must hold an object before it is acknowledged.
    #[arg(long, default_value_t = 2)]
    quorum: u8,
    /// Seed of the object contents.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory the cluster demo persists to (the embedded default under-store); by
    /// default a fresh one under the system's temporary directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    under_store: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a cluster CA and a certificate for each name (nodes and clients) into a
    /// directory, for `[node] certs` in the config.
    Certs {
        /// Directory to write `ca.pem`, `ca.key`, `<name>.pem`, `<name>.key` into.
        #[arg(long)]
        out: PathBuf,
        /// Names, comma-separated: every member's name, and clients' names.
        #[arg(long, value_delimiter = ',', required = true)]
        names: Vec<String>,
    },
    /// A local cluster of three workers serving the S3 API, until SIGTERM or Ctrl-C:
    /// point boto3, pyarrow or polars at the address it prints.
    Serve {
        /// Where the S3 gateway listens.
        #[arg(long, default_value = "127.0.0.1:9000")]
        gateway: SocketAddr,
        /// Where objects persist: file:///dir, or s3://bucket/prefix with S3 reached as
        /// the AWS_* environment variables say.
        #[arg(long, default_value = "file:///tmp/fdw-under-store")]
        under_store: String,
        /// Write type of gateway writes.
        #[arg(long, default_value = "ASYNC_THROUGH")]
        write_type: WriteType,
        /// The access key clients sign with.
        #[arg(long, env = "FDW_ACCESS_KEY", default_value = "fdw")]
        access_key: String,
        /// Its secret.
        #[arg(long, env = "FDW_SECRET_KEY", default_value = "fdw-secret-key")]
        secret_key: String,
        /// More identities, each `ACCESS:SECRET` (repeatable): buckets belong to the key
        /// that created them.
        #[arg(long = "key", value_parser = parse_key)]
        keys: Vec<fdw_engine::gateway::AccessKey>,
        /// Serve unsigned requests too.
        #[arg(long)]
        anonymous: bool,
    },
    /// The memory pool and object store on their own: write, read, persist states,
    /// eviction and backpressure.
    StoreDemo {
        /// Page backing: auto (hugetlb, else THP, else plain), require, transparent or off.
        #[arg(long, default_value = "auto")]
        huge_pages: HugePagePolicy,
        /// mlock the pool.
        #[arg(long)]
        lock: bool,
    },
}

/// `--key ACCESS:SECRET`.
fn parse_key(text: &str) -> Result<fdw_engine::gateway::AccessKey, String> {
    match text.split_once(':') {
        Some((access, secret)) if !access.is_empty() && !secret.is_empty() => {
            Ok(fdw_engine::gateway::AccessKey {
                access_key: access.to_owned(),
                secret_key: secret.to_owned(),
            })
        }
        _ => Err("expected ACCESS:SECRET, both non-empty".into()),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let pool_size_bytes = usize::try_from(args.pool_size.as_u64())?;
    let chunk_size_bytes = usize::try_from(args.chunk_size.as_u64())?;
    if let Some(path) = args.config {
        return runtime.block_on(run_node::run(&path));
    }
    match args.command {
        Some(Command::Certs { out, names }) => run_node::certs(&out, &names),
        Some(Command::Serve {
            gateway,
            under_store,
            write_type,
            access_key,
            secret_key,
            keys,
            anonymous,
        }) => {
            let mut replication = serve_local::default_replication(args.replicas, args.quorum);
            replication.write_type = write_type;
            runtime.block_on(serve_local::run(serve_local::Settings {
                nodes: 3,
                pool_size_bytes,
                chunk_size_bytes,
                replication,
                gateway,
                under_store,
                keys: std::iter::once(fdw_engine::gateway::AccessKey {
                    access_key,
                    secret_key,
                })
                .chain(keys)
                .collect(),
                anonymous,
            }))
        }
        None => runtime.block_on(cluster_demo::run(cluster_demo::Settings {
            nodes: 3,
            pool_size_bytes,
            chunk_size_bytes,
            replicas: args.replicas,
            quorum: args.quorum,
            objects: args.objects,
            seed: args.seed,
            under_store: args.under_store,
        })),
        Some(Command::StoreDemo { huge_pages, lock }) => {
            runtime.block_on(store_demo::run(store_demo::Settings {
                pool_size_bytes,
                chunk_size_bytes,
                huge_pages,
                lock,
                objects: 300,
                seed: args.seed,
            }))
        }
    }
}
