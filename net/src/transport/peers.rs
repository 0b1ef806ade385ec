//! One QUIC connection per peer, made on first use and reused until it closes: what the
//! client SDK and every worker keep towards the members they talk to.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::placement::Member;

/// Connections to the members of a cluster, by member id.
pub struct Peers {
    endpoint: quinn::Endpoint,
    connections: Mutex<HashMap<u16, quinn::Connection>>,
    connect_timeout: Duration,
}

impl Peers {
    /// Connections made from `endpoint`; a handshake slower than `connect_timeout` fails.
    pub fn new(endpoint: quinn::Endpoint, connect_timeout: Duration) -> Self {
        Self {
            endpoint,
            connections: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    /// The live connection to `member`, connecting if there is none. A member that does
    /// not complete the handshake within the connect timeout counts as down.
    pub async fn connection(&self, member: &Member) -> Result<quinn::Connection, String> {
        let cached = self
            .lock()
            .get(&member.id)
            .filter(|c| c.close_reason().is_none())
            .cloned();
        if let Some(connection) = cached {
            return Ok(connection);
        }
        let connecting = super::connect(&self.endpoint, &member.name, member.addr);
        let connection = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => return Err(format!("unreachable: {err}")),
            Err(_) => {
                return Err(format!(
                    "unreachable: no handshake within {:?}",
                    self.connect_timeout
                ));
            }
        };
        self.lock().insert(member.id, connection.clone());
        Ok(connection)
    }

    /// The endpoint connections are made from.
    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, quinn::Connection>> {
        self.connections
            .lock()
            .expect("peer map lock poisoned: a panic while holding it")
    }
}
