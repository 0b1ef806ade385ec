//! `fdw-engine serve`: a local cluster with its S3 gateway, until SIGTERM or Ctrl-C. What
//! the Python tests and the seed pipeline run against, and the quickest way to point a
//! framework at fdw.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use fdw_client::{Client, ClientConfig, Replication, WriteType};
use fdw_engine::gateway::{AccessKey, Gateway, GatewayConfig};
use fdw_engine::{LocalCluster, PoolConfig};
use fdw_persist::{S3Config, UnderStoreLocation};

pub(crate) struct Settings {
    pub(crate) nodes: u16,
    pub(crate) pool_size_bytes: usize,
    pub(crate) chunk_size_bytes: usize,
    pub(crate) replication: Replication,
    pub(crate) gateway: SocketAddr,
    /// `file:///dir` or `s3://bucket/prefix` (S3 reached as the AWS_* variables say).
    pub(crate) under_store: String,
    pub(crate) keys: Vec<AccessKey>,
    pub(crate) anonymous: bool,
}

pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let location: UnderStoreLocation = settings
        .under_store
        .parse()
        .with_context(|| format!("--under-store {}", settings.under_store))?;
    if let UnderStoreLocation::LocalDir(dir) = &location {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let s3 = S3Config::from_env();
    let pool = PoolConfig {
        size_bytes: settings.pool_size_bytes,
        chunk_size_bytes: settings.chunk_size_bytes,
        ..PoolConfig::default()
    };
    let cluster = LocalCluster::start(settings.nodes, pool, |c| {
        c.persist.default_location = Some(location.clone());
        c.persist.s3 = s3.clone();
    })
    .await
    .context("starting the local cluster")?;
    let mut client = ClientConfig::new(cluster.members().to_vec());
    client.replication = settings.replication;
    let client = Client::connect(client, &cluster.client_identity("gateway")?)
        .await
        .context("connecting the gateway to the cluster")?;
    let mut config = GatewayConfig::new(settings.gateway, settings.keys, settings.replication);
    config.anonymous = settings.anonymous;
    let gateway = Gateway::start(config, client).await?;
    println!(
        "fdw-engine: {} workers, R={} W={} {}, persisting to {location}",
        settings.nodes,
        settings.replication.replicas,
        settings.replication.quorum,
        settings.replication.write_type.as_str(),
    );
    // Scripts wait for this line.
    println!("S3 gateway at http://{}", gateway.addr());
    std::io::stdout().flush()?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    drop(gateway);
    cluster.shutdown().await;
    Ok(())
}

/// The write settings `serve` uses unless told: the fast durable write.
pub(crate) fn default_replication(replicas: u8, quorum: u8) -> Replication {
    Replication {
        write_type: WriteType::AsyncThrough,
        replicas,
        quorum,
    }
}
