//! A cluster of nodes in one process on loopback, each with its own pool and QUIC
//! endpoint, authenticated by a throwaway CA: the main job's default and the
//! integration tests' fixture. Nothing is shared between nodes but the network.

use fdw_net::placement::{Member, Placement};
use fdw_net::transport::{self, ClusterCa, NodeIdentity, TlsError, TransportError};

use crate::node::{Node, NodeConfig, NodeError};
use crate::pool::PoolConfig;

/// Nodes on 127.0.0.1, ports chosen by the kernel.
pub struct LocalCluster {
    members: Vec<Member>,
    nodes: Vec<Option<Node>>,
    ca: ClusterCa,
}

impl LocalCluster {
    /// Starts `n` nodes, each configured by `configure` from its default config.
    pub async fn start(
        n: u16,
        pool: PoolConfig,
        configure: impl Fn(&mut NodeConfig),
    ) -> Result<Self, NodeError> {
        let ca = ClusterCa::generate().map_err(TransportError::from)?;
        let mut sockets = Vec::new();
        let mut members = Vec::new();
        for id in 0..n {
            let socket = transport::bind(([127, 0, 0, 1], 0).into())?;
            let addr = socket.local_addr().map_err(|source| TransportError::Bind {
                addr: ([127, 0, 0, 1], 0).into(),
                source,
            })?;
            members.push(Member {
                id,
                name: format!("node-{id}"),
                addr,
            });
            sockets.push(socket);
        }
        let placement = Placement::new(members.clone());
        let mut nodes = Vec::new();
        for (member, socket) in members.iter().zip(sockets) {
            let mut config = NodeConfig::new(member.id, placement.clone(), pool.clone());
            configure(&mut config);
            let identity = ca.issue(&member.name).map_err(TransportError::from)?;
            nodes.push(Some(Node::start_on(config, &identity, socket).await?));
        }
        Ok(Self { members, nodes, ca })
    }

    /// The member list, for clients.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// A client certificate from the cluster's CA.
    pub fn client_identity(&self, name: &str) -> Result<NodeIdentity, TlsError> {
        self.ca.issue(name)
    }

    /// A client of this cluster named `name`, with the SDK's defaults.
    pub async fn client(
        &self,
        name: &str,
    ) -> Result<fdw_client::Client, Box<dyn std::error::Error + Send + Sync>> {
        let identity = self.client_identity(name)?;
        let config = fdw_client::ClientConfig::new(self.members.clone());
        Ok(fdw_client::Client::connect(config, &identity).await?)
    }

    /// Writes the CA and a client certificate `client` into `dir`, as `fdw-engine certs`
    /// would, so tools that read certificate files (the `fdw` CLI) can talk to this
    /// cluster.
    pub fn save_client_certs(&self, dir: &std::path::Path, client: &str) -> Result<(), TlsError> {
        self.ca.save(dir)?;
        self.ca.issue(client)?.save(dir)
    }

    /// Node `id`, if running.
    pub fn node(&self, id: u16) -> Option<&Node> {
        self.nodes.get(usize::from(id)).and_then(Option::as_ref)
    }

    /// Stops node `id` at once (no grace period): its connections close and its memory
    /// is gone.
    pub async fn stop(&mut self, id: u16) {
        if let Some(node) = self.nodes.get_mut(usize::from(id)).and_then(Option::take) {
            node.shutdown(std::time::Duration::ZERO).await;
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for id in 0..self.nodes.len() as u16 {
            self.stop(id).await;
        }
    }
}
