//! Reaching a running cluster from its TOML file (the one the nodes use): its members,
//! its default replication, and a client certificate from its certs directory.

use std::path::Path;

use anyhow::Context;
use fdw_client::{Client, ClientConfig, NodeIdentity};
use fdw_engine::Config;

/// A client of the cluster that `config` describes, presenting certificate `identity`.
pub async fn connect(config: &Path, identity: &str) -> anyhow::Result<Client> {
    let config = Config::load(config)?;
    let identity = NodeIdentity::load(&config.node.certs, identity)
        .with_context(|| format!("loading client certificate {identity:?}"))?;
    let mut client_config = ClientConfig::new(config.placement().members().to_vec());
    client_config.replication = config.default_replication();
    Ok(Client::connect(client_config, &identity).await?)
}
