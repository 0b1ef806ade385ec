//! One QUIC connection per peer, made on first use and reused until it closes: what the
//! client SDK and every worker keep towards the members they talk to. A member whose
//! last handshake failed is remembered as unreachable for a while, so callers can try
//! the others first instead of paying the connect timeout on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::placement::Member;

/// Connections to the members of a cluster, by member id.
pub struct Peers {
    endpoint: quinn::Endpoint,
    connections: Mutex<HashMap<u16, quinn::Connection>>,
    connect_timeout: Duration,
    /// When each member's last handshake failed, until one succeeds.
    unreachable: Mutex<HashMap<u16, Instant>>,
}

/// How long a failed handshake marks a member as unreachable.
const UNREACHABLE_FOR: Duration = Duration::from_secs(2);

impl Peers {
    /// Connections made from `endpoint`; a handshake slower than `connect_timeout` fails.
    pub fn new(endpoint: quinn::Endpoint, connect_timeout: Duration) -> Self {
        Self {
            endpoint,
            connections: Mutex::new(HashMap::new()),
            connect_timeout,
            unreachable: Mutex::new(HashMap::new()),
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
        let failed = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(connection)) => {
                self.unreachable().remove(&member.id);
                self.lock().insert(member.id, connection.clone());
                return Ok(connection);
            }
            Ok(Err(err)) => format!("unreachable: {err}"),
            Err(_) => format!(
                "unreachable: no handshake within {:?}",
                self.connect_timeout
            ),
        };
        self.unreachable().insert(member.id, Instant::now());
        Err(failed)
    }

    /// Forgets the connection to `id`, which stopped answering. A peer killed without
    /// closing its connections leaves them looking open until the idle timeout; the next
    /// call makes a new one, which reaches the peer's restarted process at once (or
    /// fails its handshake if it is still down).
    pub fn drop_connection(&self, id: u16) {
        if let Some(connection) = self.lock().remove(&id) {
            connection.close(0u32.into(), b"no answer");
        }
    }

    /// Whether `id`'s last handshake failed within the last two seconds: worth trying
    /// after the others.
    pub fn recently_unreachable(&self, id: u16) -> bool {
        self.unreachable()
            .get(&id)
            .is_some_and(|at| at.elapsed() < UNREACHABLE_FOR)
    }

    /// `members` with the recently unreachable ones moved to the end, order otherwise
    /// kept: nobody is skipped, but the likely live are tried first.
    pub fn reachable_first<'a>(&self, members: Vec<&'a Member>) -> Vec<&'a Member> {
        let (mut first, last): (Vec<_>, Vec<_>) = members
            .into_iter()
            .partition(|m| !self.recently_unreachable(m.id));
        first.extend(last);
        first
    }

    fn unreachable(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Instant>> {
        self.unreachable
            .lock()
            .expect("unreachable map lock poisoned: a panic while holding it")
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
