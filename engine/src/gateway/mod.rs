//! The S3 gateway: every framework that speaks S3 (boto3, pyarrow, polars, Spark, DuckDB)
//! shares data through fdw without code changes.
//!
//! The s3s crate does the protocol: HTTP routing, XML, SigV4 (headers, presigned URLs,
//! streaming chunks with trailers) and S3's error responses. This module maps each
//! operation onto the SDK ([`fdw_client::Client`]): a PUT is an fdw put streamed frame by
//! frame to the key's primary, a GET reads from the first replica that answers. So the
//! gateway holds no state that matters: any node's gateway serves any request, and a
//! gateway that dies loses nothing acknowledged.
//!
//! - [`buckets`]: buckets created, listed and deleted, as records in the cluster;
//! - [`objects`]: put, get, head, copy and delete of objects;
//! - [`listing`]: ListObjectsV2 and ListObjects, with prefixes, delimiters and pages;
//! - [`metadata`]: the headers an object is written and served with;
//! - [`multipart`]: multipart uploads, their parts held in the cluster's memory;
//! - [`parts`]: which bytes part N of an object is (GetObject by `partNumber`);
//! - [`checked_body`]: request bodies checked against their length and CRC32 before the
//!   last byte reaches the cluster;
//! - [`checksums`]: SHA-256, SHA-1, CRC32C and CRC64NVME checksums kept and combined;
//! - [`frames`]: objects handed on frame by frame, to a response or into another put;
//! - [`names`]: ETags, times and errors as S3 clients expect them;
//! - [`preflight`]: what is settled before s3s sees a request (presigned expiry, bodies
//!   of unknown length).

mod access;
mod buckets;
mod checked_body;
mod checksums;
mod frames;
mod listing;
mod metadata;
mod multipart;
mod names;
mod objects;
mod parts;
mod preflight;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fdw_client::Client;
use fdw_net::wire::Replication;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use access::AccessKey;

/// What the gateway serves and to whom.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Keys whose SigV4 signatures it accepts.
    pub keys: Vec<AccessKey>,
    /// Whether unsigned requests are served (with no keys: the only way in).
    pub anonymous: bool,
    /// Base domains of virtual-hosted-style addressing (`bucket.<domain>`); a request to
    /// any other host is path-style.
    pub domains: Vec<String>,
    /// How writes are replicated and persisted unless the bucket or request says.
    pub default: Replication,
    /// Per-bucket replication of writes; these buckets always exist.
    pub buckets: BTreeMap<String, Replication>,
    /// Whether CreateBucket makes new buckets: only where the cluster persists buckets
    /// it was not configured with (a default under-store location); else a created
    /// bucket's objects could never reach the under-store.
    pub create_buckets: bool,
    /// Connections served at once; more wait in the kernel's accept queue. Bounds the
    /// descriptors and tasks a flood of clients can take from the worker.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and how long it may
    /// sit idle between requests, before it is closed (slow or silent clients).
    pub header_timeout: Duration,
    /// A multipart upload neither completed nor aborted this long after it began is
    /// removed with its parts, which hold memory that is never evicted.
    pub multipart_expiry: Duration,
}

impl GatewayConfig {
    /// A gateway on `addr` accepting `keys`, writing with `default`, every bucket open.
    pub fn new(addr: SocketAddr, keys: Vec<AccessKey>, default: Replication) -> Self {
        Self {
            addr,
            keys,
            anonymous: false,
            domains: Vec::new(),
            default,
            buckets: BTreeMap::new(),
            create_buckets: true,
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            multipart_expiry: Duration::from_secs(24 * 3600),
        }
    }

    /// Why no gateway could serve with these settings, if so.
    pub fn check(&self) -> Result<(), String> {
        if self.keys.is_empty() && !self.anonymous {
            return Err("has no keys and anonymous = false: nobody could use it".into());
        }
        if self.max_connections == 0
            || self.header_timeout.is_zero()
            || self.multipart_expiry.is_zero()
        {
            return Err(
                "max_connections, header_timeout and multipart_expiry must not be 0".into(),
            );
        }
        Ok(())
    }
}

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The address could not be bound.
    #[error("binding the S3 gateway to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("S3 gateway: {0}")]
    Invalid(String),
}

/// The state every request shares.
struct Shared {
    client: Client,
    config: GatewayConfig,
    /// Buckets this gateway has seen multipart uploads in: where it expires them.
    uploads_in: Mutex<BTreeSet<String>>,
    started: SystemTime,
}

impl Shared {
    fn note_uploads_in(&self, bucket: &str) {
        let mut buckets = self.uploads_in.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains(bucket) {
            buckets.insert(bucket.to_owned());
        }
    }

    /// Where expired uploads may be: the configured buckets and those with uploads seen.
    fn buckets_with_uploads(&self) -> BTreeSet<String> {
        let mut buckets = self
            .uploads_in
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        buckets.extend(self.config.buckets.keys().cloned());
        buckets
    }
}

/// A running gateway. Dropping it stops accepting connections and expiring uploads.
pub struct Gateway {
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
    expire: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.accept.abort();
        self.expire.abort();
    }
}

impl Gateway {
    /// Serves the S3 API on `config.addr`, reaching the cluster through `client`.
    pub async fn start(config: GatewayConfig, client: Client) -> Result<Self, GatewayError> {
        config.check().map_err(GatewayError::Invalid)?;
        let addr = config.addr;
        let s3 = objects::FdwS3 {
            shared: Arc::new(Shared {
                client,
                started: names::now(),
                uploads_in: Mutex::default(),
                config: config.clone(),
            }),
        };
        let sweeper = s3.clone();
        let mut builder = s3s::service::S3ServiceBuilder::new(s3);
        builder.set_host(access::Domains::new(&config.domains)?);
        if !config.keys.is_empty() {
            builder.set_auth(access::Keys::new(&config.keys));
        }
        if config.anonymous {
            builder.set_access(access::AllowAnonymous);
        }
        let service = preflight::Preflight::new(builder.build());
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        // HTTP/1.1 only, as S3 itself: no version sniffing that could wait untimed.
        let mut http = auto::Builder::new(TokioExecutor::new()).http1_only();
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout);
        // Tasks only once nothing can fail: an error return leaves none running.
        let expire = tokio::spawn(expire_uploads(sweeper));
        let accept = tokio::spawn(accept_loop(
            listener,
            Arc::new(Semaphore::new(config.max_connections)),
            http,
            service,
        ));
        tracing::info!(%addr, "S3 gateway serving");
        Ok(Self {
            addr,
            accept,
            expire,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Removes expired multipart uploads, checking a few times per `multipart_expiry`.
async fn expire_uploads(s3: objects::FdwS3) {
    let expiry = s3.shared.config.multipart_expiry;
    let period = (expiry / 4).clamp(Duration::from_millis(100), Duration::from_secs(600));
    loop {
        tokio::time::sleep(period).await;
        let cutoff = names::now()
            .checked_sub(expiry)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for bucket in s3.shared.buckets_with_uploads() {
            multipart::sweep(&s3, &bucket, cutoff).await;
        }
    }
}

/// Serves each connection in its own task while it holds one of `slots`.
async fn accept_loop(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    http: auto::Builder<TokioExecutor>,
    service: preflight::Preflight,
) {
    let http = Arc::new(http);
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                tracing::warn!("S3 gateway: at max_connections; new connections wait");
                match Arc::clone(&slots).acquire_owned().await {
                    Ok(slot) => slot,
                    Err(_) => return, // never closed
                }
            }
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors, for example: the listener itself is fine.
                tracing::warn!(%err, "S3 gateway: accepting a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (http, service) = (Arc::clone(&http), service.clone());
        tokio::spawn(async move {
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
            drop(slot);
        });
    }
}
