//! Running one node of a real cluster, and making its certificates.

use std::path::Path;

use anyhow::Context;
use fdw_client::{Client, ClientConfig};
use fdw_engine::gateway::Gateway;
use fdw_engine::{Config, Node};
use fdw_net::transport::{ClusterCa, NodeIdentity};

/// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
pub(crate) async fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let me = config.me().clone();
    let identity = NodeIdentity::load(&config.node.certs, &me.name).with_context(|| {
        format!(
            "loading the certificate of {} (make them with `fdw-engine certs`)",
            me.name
        )
    })?;
    let node_config = config.node_config().map_err(anyhow::Error::msg)?;
    let node = Node::start(node_config, &identity)
        .await
        .with_context(|| format!("starting {} at {}", me.name, me.addr))?;
    // The gateway reaches the cluster, this node included, as a client would.
    let gateway = match config.gateway_config().map_err(anyhow::Error::msg)? {
        Some(gateway) => {
            let mut client = ClientConfig::new(config.placement().members().to_vec());
            client.replication = config.default_replication();
            client.connect_timeout = config.limits.connect_timeout;
            client.request_timeout = config.limits.request_timeout;
            let client = Client::connect(client, &identity)
                .await
                .context("connecting the S3 gateway to the cluster")?;
            Some(Gateway::start(gateway, client).await?)
        }
        None => None,
    };
    let store = node.store().stats();
    println!(
        "fdw-engine {} (id {}) serving at {}: {} pool, {}, {} members",
        me.name,
        me.id,
        node.addr(),
        bytesize::ByteSize(store.pool.total_bytes()),
        store.pool.backing,
        config.members.len()
    );
    if let Some(gateway) = &gateway {
        println!(
            "fdw-engine {}: S3 gateway at http://{}",
            me.name,
            gateway.addr()
        );
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!(
        "fdw-engine {}: shutting down (grace {:?})",
        me.name, config.limits.shutdown_grace
    );
    drop(gateway);
    let report = node.shutdown(config.limits.shutdown_grace).await;
    println!(
        "fdw-engine {}: stopped; {} requests were in flight, {} abandoned unacknowledged",
        me.name, report.in_flight_at_start, report.abandoned
    );
    Ok(())
}

/// Writes a CA and a certificate per name into `out`.
pub(crate) fn certs(out: &Path, names: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ca = ClusterCa::generate()?;
    ca.save(out)?;
    for name in names {
        ca.issue(name)?.save(out)?;
    }
    println!(
        "wrote ca.pem, ca.key and {} certificates to {}; give each node its own <name>.key and keep ca.key off the nodes",
        names.len(),
        out.display()
    );
    Ok(())
}
