//! A worker node: accepts QUIC connections, serves requests from clients and peers out of
//! its object store, and coordinates writes for which it is primary.
//!
//! One stream per request. A put from a client makes this node the object's primary: it
//! assigns the version, receives each data frame straight into pool memory, checks the
//! frame's CRC, and forwards the frame to the other replicas as it arrives (pipelined,
//! never store-and-forward). The client is acknowledged once W replicas — this node
//! included — hold the complete object (invariant 1).

mod compose;
mod keys_in_flight;
mod membership;
mod persist;
mod quorum;
mod read;
mod read_through;
mod recovery;
mod witness;
mod write;

pub use membership::HeartbeatConfig;
pub use persist::PersistConfig;
pub use recovery::RecoveryConfig;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use fdw_net::placement::{Member, Placement};
use fdw_net::transport::{self, NodeIdentity, Peers, TransportError, TransportTuning};
use fdw_net::wire::{ErrorKind, Request, Response};
use fdw_net::{BucketName, ObjectKey, Version};

use crate::pool::{Pool, PoolConfig, PoolError};
use crate::store::{ObjectStore, StoreConfig, StoreError};

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id in `placement`.
    pub id: u16,
    /// The cluster's members.
    pub placement: Placement,
    /// Memory pool.
    pub pool: PoolConfig,
    /// Store limits; `None` for the defaults of the pool's size.
    pub store: Option<StoreConfig>,
    /// QUIC tuning.
    pub tuning: TransportTuning,
    /// Longest wait for the next bytes of a request, or for replicas' acknowledgements:
    /// a stalled peer is cut off after this.
    pub request_timeout: Duration,
    /// Longest wait for a handshake with a peer before it counts as down.
    pub connect_timeout: Duration,
    /// Under-stores and the persist pipeline.
    pub persist: PersistConfig,
    /// Failure detection.
    pub heartbeat: HeartbeatConfig,
    /// Take-over and re-replication after failures.
    pub recovery: RecoveryConfig,
}

impl NodeConfig {
    /// Defaults for node `id` of `placement`.
    pub fn new(id: u16, placement: Placement, pool: PoolConfig) -> Self {
        Self {
            id,
            placement,
            pool,
            store: None,
            tuning: TransportTuning::default(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            persist: PersistConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            recovery: RecoveryConfig::default(),
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// `id` is not among the members.
    #[error("node id {0} is not a member of the cluster")]
    NotAMember(u16),
    /// The pool could not be mapped.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The store configuration is inconsistent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The QUIC endpoint could not be made.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// An under-store could not be opened.
    #[error("under-store: {0}")]
    UnderStore(#[from] fdw_persist::UnderStoreError),
}

/// Versions this node assigns as a primary: increasing, above anything the key has had,
/// and at least the wall clock in microseconds since the epoch (a hybrid logical clock).
/// So a restarted primary continues above what it issued before, and a version is also
/// when it was committed, which the S3 gateway answers as `Last-Modified`.
struct VersionClock {
    last: AtomicU64,
}

impl VersionClock {
    fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
        }
    }

    fn next(&self, newest: Option<Version>) -> Version {
        let floor = newest.map_or(0, |v| v.0).max(now_micros());
        let previous = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(last.max(floor) + 1)
            })
            .expect("the update closure always returns Some");
        Version(previous.max(floor) + 1)
    }
}

fn now_micros() -> u64 {
    #[allow(clippy::disallowed_methods)] // a timestamp, not a duration measurement
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_micros() as u64
}

/// A value that differs between two starts of a node: the start time in microseconds,
/// mixed with a random draw in case two starts fall in the same one.
fn incarnation() -> u64 {
    use std::hash::BuildHasher;
    now_micros() ^ std::hash::RandomState::new().hash_one(std::process::id())
}

struct NodeShared {
    me: Member,
    placement: Placement,
    store: ObjectStore,
    peers: Peers,
    versions: VersionClock,
    request_timeout: Duration,
    persister: persist::Persister,
    read_through: read_through::ReadThrough,
    membership: membership::Membership,
    recovery: recovery::Recovery,
    witnesses: witness::Witnesses,
    keys_in_flight: keys_in_flight::KeysInFlight,
    /// Changes with every start of the process: peers tell a restart by it.
    incarnation: u64,
    /// Set at shutdown: new requests are refused, those in flight may finish.
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl NodeShared {
    /// Sends `member` one request without data and reads its answer, within the
    /// request timeout.
    async fn ask(&self, member: &Member, request: &[u8]) -> Result<Response, String> {
        let connection = self.peers.connection(member).await?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        transport::write_message(&mut send, request)
            .await
            .map_err(|e| e.to_string())?;
        let _ = send.finish();
        transport::within(self.request_timeout, transport::read_response(&mut recv))
            .await
            .map_err(|e| e.to_string())
    }
}

/// Counts one request in flight for as long as it lives.
struct InFlight<'a>(&'a NodeShared);

impl<'a> InFlight<'a> {
    fn enter(node: &'a NodeShared) -> Self {
        node.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(node)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What a shutdown did with the requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Requests that were in flight when the shutdown began.
    pub in_flight_at_start: usize,
    /// Requests still unfinished when the grace period ended; their peers see the
    /// connection close, so none of them was acknowledged.
    pub abandoned: usize,
}

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    shared: Arc<NodeShared>,
    endpoint: quinn::Endpoint,
}

impl Node {
    /// Maps the pool, binds the member's address and starts serving.
    pub async fn start(config: NodeConfig, identity: &NodeIdentity) -> Result<Self, NodeError> {
        let me = config
            .placement
            .member(config.id)
            .cloned()
            .ok_or(NodeError::NotAMember(config.id))?;
        let socket = transport::bind(me.addr)?;
        Self::start_on(config, identity, socket).await
    }

    /// As [`start`](Self::start), on a socket the caller bound (so a local cluster can
    /// pick free ports before it writes the member list).
    pub async fn start_on(
        config: NodeConfig,
        identity: &NodeIdentity,
        socket: std::net::UdpSocket,
    ) -> Result<Self, NodeError> {
        let me = config
            .placement
            .member(config.id)
            .cloned()
            .ok_or(NodeError::NotAMember(config.id))?;
        let pool = Pool::new(&config.pool)?;
        let pool_bytes = config.pool.size_bytes as u64;
        let store = ObjectStore::new(
            pool,
            config
                .store
                .clone()
                .unwrap_or_else(|| StoreConfig::for_pool(pool_bytes)),
        )?;
        let persister = persist::Persister::new(config.persist.clone())?;
        let endpoint = transport::server_endpoint(identity, socket, &config.tuning)?;
        let bound = endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: me.addr,
                source,
            })?;
        tracing::info!(node = me.id, name = %me.name, addr = %bound, "node serving");
        let membership =
            membership::Membership::new(config.heartbeat, me.id, config.placement.members());
        let shared = Arc::new(NodeShared {
            me: Member { addr: bound, ..me },
            placement: config.placement,
            store,
            peers: Peers::new(endpoint.clone(), config.connect_timeout),
            versions: VersionClock::new(),
            request_timeout: config.request_timeout,
            persister,
            read_through: read_through::ReadThrough::default(),
            membership,
            recovery: recovery::Recovery::new(config.recovery),
            witnesses: witness::Witnesses::default(),
            keys_in_flight: keys_in_flight::KeysInFlight::default(),
            incarnation: incarnation(),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        });
        tokio::spawn(accept_loop(shared.clone(), endpoint.clone()));
        tokio::spawn(persist::run(shared.clone()));
        tokio::spawn(membership::run(shared.clone()));
        recovery::start(&shared);
        Ok(Self { shared, endpoint })
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.me.addr
    }

    /// This node's object store.
    pub fn store(&self) -> &ObjectStore {
        &self.shared.store
    }

    /// Shuts down gracefully: new requests are refused with `Unavailable`, requests in
    /// flight get up to `grace` to finish, then every connection closes — a request still
    /// unfinished fails at its peer with a connection error, so nothing is acknowledged
    /// that is not stored.
    pub async fn shutdown(self, grace: Duration) -> ShutdownReport {
        let node = &self.shared;
        node.draining.store(true, Ordering::Release);
        let in_flight_at_start = node.in_flight.load(Ordering::Acquire);
        let drained = async {
            loop {
                let idle = node.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if node.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, drained).await;
        let abandoned = node.in_flight.load(Ordering::Acquire);
        self.endpoint.close(0u32.into(), b"node shutting down");
        self.endpoint.wait_idle().await;
        tracing::info!(
            node = node.me.id,
            in_flight_at_start,
            abandoned,
            "node stopped"
        );
        ShutdownReport {
            in_flight_at_start,
            abandoned,
        }
    }
}

async fn accept_loop(node: Arc<NodeShared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let node = node.clone();
        tokio::spawn(async move {
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(err) => {
                    tracing::debug!("handshake refused: {err}");
                    return;
                }
            };
            while let Ok((send, recv)) = connection.accept_bi().await {
                tokio::spawn(serve_stream(node.clone(), send, recv));
            }
        });
    }
}

/// Serves one request. Errors caused by the peer go back to the peer; they never stop
/// the node.
async fn serve_stream(
    node: Arc<NodeShared>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let _in_flight = InFlight::enter(&node);
    if node.draining.load(Ordering::Acquire) {
        let message = format!("node {} is shutting down; try another replica", node.me.id);
        return respond(&mut send, &Response::error(ErrorKind::Unavailable, message)).await;
    }
    let request =
        match transport::within(node.request_timeout, transport::read_request(&mut recv)).await {
            Ok(request) => request,
            Err(err) => {
                let message = format!("reading the request header: {err}");
                return respond(
                    &mut send,
                    &Response::error(ErrorKind::InvalidInput, message),
                )
                .await;
            }
        };
    let response = match request {
        // The one request that streams its answer.
        Request::Get {
            object,
            range,
            under_store,
        } => {
            if let Err(err) = read::get(&node, object, range, under_store, &mut send).await {
                tracing::debug!("get ended early: {err}");
            }
            return;
        }
        Request::Put(header) => write::put(&node, header, &mut recv).await,
        Request::Delete {
            object,
            replication,
            forwarded,
        } => write::delete(&node, object, replication, forwarded).await,
        Request::Head {
            object,
            under_store,
        } => read::head(&node, object, under_store).await,
        Request::List {
            bucket,
            prefix,
            start_after,
            max_keys,
        } => read::list(&node, bucket, prefix, start_after, max_keys),
        Request::Status => read::status(&node),
        Request::Persisted { object, version } => {
            let id = object_id(&object.bucket, &object.key, version);
            let witnessed = node
                .witnesses
                .persisted(&object.bucket, &object.key, version);
            match node.store.mark_persisted(&id) {
                Ok(()) => Response::Stored {
                    version,
                    crc: 0,
                    digest: None,
                    replicas: vec![node.me.id],
                },
                // A witness holds no copy: being told is all it needed.
                Err(StoreError::VersionNotFound(_)) if witnessed => Response::Stored {
                    version,
                    crc: 0,
                    digest: None,
                    replicas: vec![],
                },
                Err(err) => store_error(err),
            }
        }
        Request::Compose(header) => compose::compose(&node, header, &mut recv).await,
        Request::Witness {
            object,
            version,
            holders,
        } => {
            node.witnesses
                .witness(object.bucket, object.key, version, holders);
            Response::Stored {
                version,
                crc: 0,
                digest: None,
                replicas: vec![],
            }
        }
    };
    respond(&mut send, &response).await;
}

async fn respond(send: &mut quinn::SendStream, response: &Response) {
    if transport::write_message(send, &response.encode())
        .await
        .is_ok()
    {
        let _ = send.finish();
    }
}

/// What a store error tells a client to do.
fn error_kind(err: &StoreError) -> ErrorKind {
    match err {
        StoreError::Backpressure { .. } => ErrorKind::ClusterFull,
        StoreError::ChecksumMismatch { .. } => ErrorKind::DataCorruption,
        StoreError::ObjectTooLarge { .. } | StoreError::RangeOutOfBounds { .. } => {
            ErrorKind::InvalidInput
        }
        StoreError::NotFound {
            deleted: Some(_), ..
        } => ErrorKind::Deleted,
        StoreError::NotFound { .. } | StoreError::VersionNotFound(_) => ErrorKind::NotFound,
        // Another replica may have the newer version, or the under-store may be back.
        StoreError::StaleVersion { .. }
        | StoreError::Evicted(_)
        | StoreError::UnderStoreMismatch { .. } => ErrorKind::Unavailable,
        StoreError::NoRoomToCache { .. } => ErrorKind::ClusterFull,
        StoreError::InvalidConfig(_)
        | StoreError::InvalidState { .. }
        | StoreError::NotPersistable(_) => ErrorKind::Internal,
    }
}

fn store_error(err: StoreError) -> Response {
    Response::error(error_kind(&err), err)
}

fn object_id(bucket: &BucketName, key: &ObjectKey, version: Version) -> crate::store::ObjectId {
    crate::store::ObjectId {
        bucket: bucket.clone(),
        key: key.clone(),
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_clear_what_the_key_has() {
        let clock = VersionClock::new();
        let a = clock.next(None);
        let b = clock.next(None);
        assert!(b > a);
        let far = Version(u64::MAX / 2);
        assert!(clock.next(Some(far)) > far);
        assert!(clock.next(None) > far, "the counter never goes back");
    }

    #[test]
    fn versions_are_commit_times() {
        let before = now_micros();
        let version = VersionClock::new().next(None);
        assert!(version.0 > before && version.0 <= now_micros() + 1);
    }
}
