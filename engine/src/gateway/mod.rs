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
//! - [`objects`]: put, get, head, copy and delete of objects;
//! - [`listing`]: ListObjectsV2 and ListObjects, with prefixes, delimiters and pages;
//! - [`multipart`]: multipart uploads, their parts held in the cluster's memory;
//! - [`checked_body`]: request bodies checked against their length and CRC32 before the
//!   last byte reaches the cluster;
//! - [`frames`]: objects handed on frame by frame, to a response or into another put;
//! - [`names`]: ETags, times and errors as S3 clients expect them.

mod access;
mod checked_body;
mod frames;
mod listing;
mod multipart;
mod names;
mod objects;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fdw_client::Client;
use fdw_net::wire::Replication;
use hyper_util::rt::{TokioExecutor, TokioIo};

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
    /// Per-bucket replication of writes; these buckets exist.
    pub buckets: BTreeMap<String, Replication>,
    /// Whether every valid bucket name exists (its objects persist under a default
    /// location); otherwise only the listed buckets and those created here exist.
    pub any_bucket: bool,
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
            any_bucket: true,
        }
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
    /// Buckets created through this gateway, with when.
    created: Mutex<BTreeMap<String, SystemTime>>,
    started: SystemTime,
}

impl Shared {
    fn bucket_exists(&self, bucket: &str) -> bool {
        self.config.any_bucket
            || self.config.buckets.contains_key(bucket)
            || self.created().contains_key(bucket)
    }

    fn created(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SystemTime>> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buckets ListBuckets shows: the configured ones and those created here.
    fn known_buckets(&self) -> Vec<(String, SystemTime)> {
        let mut names: BTreeSet<(String, SystemTime)> = self
            .config
            .buckets
            .keys()
            .map(|name| (name.clone(), self.started))
            .collect();
        names.extend(self.created().iter().map(|(n, t)| (n.clone(), *t)));
        names.into_iter().collect()
    }
}

/// A running gateway. Dropping it stops accepting connections.
pub struct Gateway {
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Gateway {
    /// Serves the S3 API on `config.addr`, reaching the cluster through `client`.
    pub async fn start(config: GatewayConfig, client: Client) -> Result<Self, GatewayError> {
        let addr = config.addr;
        let mut builder = s3s::service::S3ServiceBuilder::new(objects::FdwS3 {
            shared: Arc::new(Shared {
                client,
                started: names::now(),
                created: Mutex::default(),
                config: config.clone(),
            }),
        });
        builder.set_host(access::Domains::new(&config.domains)?);
        if !config.keys.is_empty() {
            builder.set_auth(access::Keys::new(&config.keys));
        }
        if config.anonymous {
            builder.set_access(access::AllowAnonymous);
        } else if config.keys.is_empty() {
            return Err(GatewayError::Invalid(
                "no access keys and anonymous access off: nobody could use it".into(),
            ));
        }
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let accept = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // Out of descriptors, for example: the listener itself is fine.
                        tracing::warn!(%err, "S3 gateway: accepting a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        tracing::info!(%addr, "S3 gateway serving");
        Ok(Self { addr, accept })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
