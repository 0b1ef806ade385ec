//! The node's TOML configuration, with environment overrides and human units.
//!
//! ```toml
//! [node]
//! id = 0                         # which member this node is
//! certs = "/etc/fdw/certs"       # ca.pem, <name>.pem, <name>.key (fdw-engine certs)
//!
//! [[members]]
//! id = 0
//! name = "node-0"                # certificate subject and placement input
//! addr = "10.0.0.1:7400"
//!
//! [memory]
//! pool_size = "8GiB"
//! chunk_size = "64KiB"
//! huge_pages = "auto"            # auto | require | transparent | off
//! lock = false
//! unpersisted_limit = "7GiB"     # default: 90 % of the pool
//! backpressure_timeout = "10s"
//!
//! [defaults]                     # what clients and the gateway ask for by default
//! replicas = 2
//! quorum = 2
//! write_type = "ASYNC_THROUGH"
//!
//! [limits]
//! request_timeout = "10s"        # a stalled peer is cut off after this
//! connect_timeout = "1s"         # a peer that does not answer is down
//! heartbeat_interval = "500ms"   # each member is sent a heartbeat this often
//! failure_timeout = "2s"         # a member silent this long is declared dead
//! recovery_copy_rate = "256MiB"  # bytes a second re-replication may send
//! shutdown_grace = "10s"         # in-flight requests get this long to finish
//!
//! [buckets]                      # bucket -> under-store
//! stage-1 = "file:///var/lib/fdw/stage-1"
//!
//! [persist]
//! default = "s3://lake/fdw"      # buckets not listed above (CreateBucket needs it); none: not persisted
//! initial_delay = "0s"           # wait after commit before uploading
//! concurrency = 8                # uploads in flight
//! max_bytes_in_flight = "512MiB"
//! part_size = "16MiB"            # larger objects go multipart, in parts this size
//! retry_attempts = 6             # tries per call, with exponential backoff and jitter
//! failure_backoff = "1s"         # an upload that failed is tried again after this
//! ack_timeout = "60s"            # CACHE_THROUGH / THROUGH puts wait this long at most
//!
//! [gateway]                      # the S3 API; absent: none
//! addr = "0.0.0.0:9000"
//! domains = ["s3.fdw.internal"]  # virtual-hosted style: <bucket>.s3.fdw.internal
//! anonymous = false              # serve unsigned requests
//! keys = [{ access_key = "PIPELINE", secret_key = "..." }]
//! max_connections = 1024         # more wait in the accept queue
//! header_timeout = "30s"         # slow headers and idle connections are closed after this
//! multipart_expiry = "24h"       # unfinished multipart uploads are removed after this
//! [gateway.buckets.scratch]      # a bucket's writes through the gateway ([defaults] else)
//! write_type = "MUST_CACHE"
//! replicas = 3
//!
//! [s3]                           # for s3:// locations; keys come from AWS_ACCESS_KEY_ID,
//! endpoint = "http://minio:9000" # AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)
//! region = "us-east-1"
//! path_style = true
//! ```
//!
//! Any value can be overridden from the environment as `FDW__<SECTION>__<KEY>`, for
//! example `FDW__MEMORY__POOL_SIZE=2GiB` or `FDW__NODE__ID=1`; the value is read as TOML
//! (numbers, booleans) or else as a string.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use fdw_net::WriteType;
use fdw_net::placement::{Member, Placement};
use fdw_net::wire::Replication;
use fdw_persist::{RetryPolicy, S3Config, UnderStoreLocation};
use serde::Deserialize;

use crate::gateway::{AccessKey, GatewayConfig};
use crate::node::{HeartbeatConfig, NodeConfig, PersistConfig, RecoveryConfig};
use crate::pool::{HugePagePolicy, PoolConfig};
use crate::store::StoreConfig;

/// The environment prefix of overrides.
pub const ENV_PREFIX: &str = "FDW__";

/// Why a configuration was refused. The message names the file and setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown setting, or a value of the wrong kind.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the setting's name.
        message: String,
    },
    /// Settings that do not fit together.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which settings and why.
        message: String,
    },
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// `[node]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// This node's member id.
    pub id: u16,
    /// Directory with `ca.pem`, `<name>.pem`, `<name>.key`.
    pub certs: PathBuf,
}

/// One `[[members]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSection {
    /// Stable id.
    pub id: u16,
    /// Name: certificate subject.
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
}

/// `[memory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySection {
    /// Pool size.
    pub pool_size: ByteSize,
    /// Chunk size.
    pub chunk_size: ByteSize,
    /// Page backing policy.
    #[serde(deserialize_with = "from_str")]
    pub huge_pages: HugePagePolicy,
    /// mlock the pool.
    pub lock: bool,
    /// Unpersisted limit; default 90 % of the pool.
    pub unpersisted_limit: Option<ByteSize>,
    /// How long writes wait for memory.
    #[serde(deserialize_with = "duration")]
    pub backpressure_timeout: Duration,
}

impl Default for MemorySection {
    fn default() -> Self {
        Self {
            pool_size: ByteSize::gib(1),
            chunk_size: ByteSize::kib(64),
            huge_pages: HugePagePolicy::Auto,
            lock: false,
            unpersisted_limit: None,
            backpressure_timeout: Duration::from_secs(10),
        }
    }
}

/// `[defaults]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsSection {
    /// Replicas R; default 2, or 1 for a one-member cluster.
    pub replicas: Option<u8>,
    /// Quorum W; default R.
    pub quorum: Option<u8>,
    /// Write type.
    #[serde(deserialize_with = "from_str")]
    pub write_type: WriteType,
}

impl Default for DefaultsSection {
    fn default() -> Self {
        Self {
            replicas: None,
            quorum: None,
            write_type: WriteType::AsyncThrough,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Stalled-peer cut-off.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Handshake timeout.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Grace period for in-flight requests at shutdown.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Heartbeat period.
    #[serde(deserialize_with = "duration")]
    pub heartbeat_interval: Duration,
    /// Silence after which a member is declared dead.
    #[serde(deserialize_with = "duration")]
    pub failure_timeout: Duration,
    /// Bytes a second re-replication may send.
    pub recovery_copy_rate: ByteSize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            heartbeat_interval: HeartbeatConfig::default().interval,
            failure_timeout: HeartbeatConfig::default().failure_timeout,
            recovery_copy_rate: ByteSize(RecoveryConfig::default().copy_bytes_per_sec),
        }
    }
}

/// `[persist]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistSection {
    /// Under-store of buckets not in `[buckets]`.
    pub default: Option<String>,
    /// Wait after commit before uploading.
    #[serde(deserialize_with = "duration")]
    pub initial_delay: Duration,
    /// Uploads in flight.
    pub concurrency: usize,
    /// Bytes in flight.
    pub max_bytes_in_flight: ByteSize,
    /// Multipart part size.
    pub part_size: ByteSize,
    /// Tries per call.
    pub retry_attempts: u32,
    /// Wait before an upload that failed is tried again.
    #[serde(deserialize_with = "duration")]
    pub failure_backoff: Duration,
    /// Longest wait of a CACHE_THROUGH or THROUGH put for its upload.
    #[serde(deserialize_with = "duration")]
    pub ack_timeout: Duration,
}

impl Default for PersistSection {
    fn default() -> Self {
        let defaults = PersistConfig::default();
        Self {
            default: None,
            initial_delay: defaults.initial_delay,
            concurrency: defaults.concurrency,
            max_bytes_in_flight: ByteSize::b(defaults.max_bytes_in_flight),
            part_size: ByteSize::b(defaults.part_bytes),
            retry_attempts: defaults.retry.attempts,
            failure_backoff: defaults.failure_backoff,
            ack_timeout: defaults.ack_timeout,
        }
    }
}

/// `[s3]`: how to reach S3 for `s3://` locations. Credentials come from the standard
/// AWS environment variables, never from this file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Section {
    /// Endpoint of an S3-compatible server (default: AWS, or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region (default: `AWS_REGION`, else us-east-1).
    pub region: Option<String>,
    /// Path-style addressing (default: on when an endpoint is set).
    pub path_style: Option<bool>,
}

/// `[gateway]`: the S3 API this node serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Base domains of virtual-hosted-style addressing.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Serve unsigned requests.
    #[serde(default)]
    pub anonymous: bool,
    /// Access keys accepted (the file holding them must be readable only by fdw).
    #[serde(default)]
    pub keys: Vec<AccessKey>,
    /// Per-bucket write settings.
    #[serde(default)]
    pub buckets: BTreeMap<String, BucketWrites>,
    /// Connections served at once (default 1024).
    pub max_connections: Option<usize>,
    /// Limit on sending a request's headers, and on idling between requests (default 30s).
    #[serde(default, deserialize_with = "optional_duration")]
    pub header_timeout: Option<Duration>,
    /// Multipart uploads left unfinished this long are removed (default 24h).
    #[serde(default, deserialize_with = "optional_duration")]
    pub multipart_expiry: Option<Duration>,
}

/// `[gateway.buckets.<name>]`: how the gateway writes to one bucket; what is left out
/// comes from `[defaults]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BucketWrites {
    /// Write type.
    pub write_type: Option<String>,
    /// Replicas R.
    pub replicas: Option<u8>,
    /// Quorum W; default the smaller of `[defaults]`'s and R.
    pub quorum: Option<u8>,
}

/// A whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`.
    pub node: NodeSection,
    /// `[[members]]`.
    pub members: Vec<MemberSection>,
    /// `[memory]`.
    #[serde(default)]
    pub memory: MemorySection,
    /// `[defaults]`.
    #[serde(default)]
    pub defaults: DefaultsSection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[buckets]`: bucket → under-store location.
    #[serde(default)]
    pub buckets: BTreeMap<String, String>,
    /// `[persist]`.
    #[serde(default)]
    pub persist: PersistSection,
    /// `[s3]`.
    #[serde(default)]
    pub s3: S3Section,
    /// `[gateway]`.
    #[serde(default)]
    pub gateway: Option<GatewaySection>,
}

impl Config {
    /// Reads `path`, applies `FDW__SECTION__KEY` overrides from the environment, and
    /// checks the result.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text, std::env::vars())
    }

    /// Parses `text` (read from `path`) with `env` as the environment.
    pub fn parse(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.into(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        for (name, value) in env {
            let Some(setting) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = setting.split_once("__") else {
                return Err(parse_error(format!(
                    "environment override {name} must be {ENV_PREFIX}<SECTION>__<KEY>"
                )));
            };
            let value = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            let section = table
                .entry(section.to_ascii_lowercase())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section) = section else {
                return Err(parse_error(format!(
                    "{name} overrides a setting that is not a section"
                )));
            };
            section.insert(key.to_ascii_lowercase(), value);
        }
        let config: Config = table
            .try_into()
            .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut ids: Vec<u16> = self.members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("[[members]]: two members share an id".into());
        }
        let mut names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("[[members]]: two members share a name".into());
        }
        if !ids.contains(&self.node.id) {
            return Err(format!(
                "[node] id = {} is not among [[members]] ids {ids:?}",
                self.node.id
            ));
        }
        let replication = self.default_replication();
        Replication::new(
            replication.write_type,
            replication.replicas,
            replication.quorum,
        )
        .map_err(|e| format!("[defaults]: {e}"))?;
        if usize::from(replication.replicas) > self.members.len() {
            return Err(format!(
                "[defaults] replicas = {} but there are only {} members",
                replication.replicas,
                self.members.len()
            ));
        }
        let limits = &self.limits;
        if limits.heartbeat_interval.is_zero()
            || limits.failure_timeout <= limits.heartbeat_interval
        {
            return Err(format!(
                "[limits] failure_timeout ({:?}) must be longer than a non-zero \
                 heartbeat_interval ({:?}): a member needs a chance to answer",
                limits.failure_timeout, limits.heartbeat_interval
            ));
        }
        self.persist_config()?;
        self.gateway_config()?;
        Ok(())
    }

    /// The persist pipeline this file describes.
    pub fn persist_config(&self) -> Result<PersistConfig, String> {
        let mut buckets = BTreeMap::new();
        for (bucket, location) in &self.buckets {
            let name =
                fdw_net::BucketName::new(bucket.as_str()).map_err(|e| format!("[buckets]: {e}"))?;
            let location = location
                .parse::<UnderStoreLocation>()
                .map_err(|e| format!("[buckets] {bucket}: {e}"))?;
            buckets.insert(name, location);
        }
        let p = &self.persist;
        let default_location = p
            .default
            .as_deref()
            .map(|l| l.parse::<UnderStoreLocation>())
            .transpose()
            .map_err(|e| format!("[persist] default: {e}"))?;
        if p.concurrency == 0 || p.retry_attempts == 0 {
            return Err("[persist] concurrency and retry_attempts must be at least 1".into());
        }
        let mut s3 = S3Config::from_env();
        if let Some(s3) = s3.as_mut() {
            if let Some(endpoint) = &self.s3.endpoint {
                s3.endpoint = Some(endpoint.clone());
                s3.path_style = true;
            }
            if let Some(region) = &self.s3.region {
                s3.region = region.clone();
            }
            if let Some(path_style) = self.s3.path_style {
                s3.path_style = path_style;
            }
        }
        Ok(PersistConfig {
            buckets,
            default_location,
            s3,
            initial_delay: p.initial_delay,
            concurrency: p.concurrency,
            max_bytes_in_flight: p.max_bytes_in_flight.as_u64(),
            part_bytes: p.part_size.as_u64(),
            retry: RetryPolicy {
                attempts: p.retry_attempts,
                ..RetryPolicy::default()
            },
            failure_backoff: p.failure_backoff,
            ack_timeout: p.ack_timeout,
        })
    }

    /// The S3 gateway this file describes, if any.
    pub fn gateway_config(&self) -> Result<Option<GatewayConfig>, String> {
        let Some(section) = &self.gateway else {
            return Ok(None);
        };
        let default = self.default_replication();
        let mut config = GatewayConfig::new(section.addr, section.keys.clone(), default);
        config.anonymous = section.anonymous;
        config.domains = section.domains.clone();
        config.create_buckets = self.persist.default.is_some();
        config.max_connections = section.max_connections.unwrap_or(config.max_connections);
        config.header_timeout = section.header_timeout.unwrap_or(config.header_timeout);
        config.multipart_expiry = section.multipart_expiry.unwrap_or(config.multipart_expiry);
        config.check().map_err(|e| format!("[gateway] {e}"))?;
        for bucket in self.buckets.keys() {
            config.buckets.insert(bucket.clone(), default);
        }
        for (bucket, writes) in &section.buckets {
            let at = format!("[gateway.buckets.{bucket}]");
            fdw_net::BucketName::new(bucket.as_str()).map_err(|e| format!("{at}: {e}"))?;
            let write_type = writes
                .write_type
                .as_ref()
                .map(|name| name.parse::<WriteType>())
                .transpose()
                .map_err(|e| format!("{at} write_type: {e}"))?;
            let replication = default
                .overridden(write_type, writes.replicas, writes.quorum)
                .map_err(|e| format!("{at}: {e}"))?;
            if usize::from(replication.replicas) > self.members.len() {
                return Err(format!(
                    "{at} replicas = {} but there are only {} members",
                    replication.replicas,
                    self.members.len()
                ));
            }
            config.buckets.insert(bucket.clone(), replication);
        }
        Ok(Some(config))
    }

    /// What clients and the gateway ask for unless told otherwise.
    pub fn default_replication(&self) -> Replication {
        let replicas = self
            .defaults
            .replicas
            .unwrap_or(self.members.len().clamp(1, 2) as u8);
        Replication {
            write_type: self.defaults.write_type,
            replicas,
            quorum: self.defaults.quorum.unwrap_or(replicas),
        }
    }

    /// This node's member entry.
    pub fn me(&self) -> &MemberSection {
        self.members
            .iter()
            .find(|m| m.id == self.node.id)
            .expect("validated: node id is a member")
    }

    /// The cluster's placement.
    pub fn placement(&self) -> Placement {
        Placement::new(
            self.members
                .iter()
                .map(|m| Member {
                    id: m.id,
                    name: m.name.clone(),
                    addr: m.addr,
                })
                .collect(),
        )
    }

    /// The node configuration this file describes.
    pub fn node_config(&self) -> Result<NodeConfig, String> {
        let m = &self.memory;
        let as_usize = |b: ByteSize, what: &str| {
            usize::try_from(b.as_u64()).map_err(|_| format!("[memory] {what} too large"))
        };
        let pool = PoolConfig {
            size_bytes: as_usize(m.pool_size, "pool_size")?,
            chunk_size_bytes: as_usize(m.chunk_size, "chunk_size")?,
            huge_pages: m.huge_pages,
            populate: true,
            lock: m.lock,
        };
        let mut store = StoreConfig::for_pool(m.pool_size.as_u64());
        if let Some(limit) = m.unpersisted_limit {
            store.unpersisted_limit_bytes = limit.as_u64();
            store.max_object_bytes = limit.as_u64();
        }
        store.backpressure_timeout = m.backpressure_timeout;
        let mut config = NodeConfig::new(self.node.id, self.placement(), pool);
        config.store = Some(store);
        config.request_timeout = self.limits.request_timeout;
        config.connect_timeout = self.limits.connect_timeout;
        config.heartbeat = HeartbeatConfig {
            interval: self.limits.heartbeat_interval,
            failure_timeout: self.limits.failure_timeout,
        };
        if self.limits.recovery_copy_rate.as_u64() == 0 {
            return Err("[limits] recovery_copy_rate must be above zero".into());
        }
        config.recovery = RecoveryConfig {
            copy_bytes_per_sec: self.limits.recovery_copy_rate.as_u64(),
        };
        config.persist = self.persist_config()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
id = 1
certs = "/etc/fdw/certs"

[[members]]
id = 0
name = "node-0"
addr = "127.0.0.1:7400"

[[members]]
id = 1
name = "node-1"
addr = "127.0.0.1:7401"

[memory]
pool_size = "512MiB"
chunk_size = "128KiB"
huge_pages = "transparent"
backpressure_timeout = "3s"

[limits]
request_timeout = "2s 500ms"

[buckets]
stage-1 = "s3://data/stage-1"
"#;

    const GATEWAY: &str = r#"
[gateway]
addr = "127.0.0.1:9000"
keys = [{ access_key = "PIPELINE", secret_key = "s3cr3t" }]
"#;

    #[test]
    fn gateway_buckets_take_what_they_leave_out_from_the_defaults() {
        let text = format!(
            "{GOOD}{GATEWAY}[gateway.buckets.scratch]\nwrite_type = \"MUST_CACHE\"\nreplicas = 1\n"
        );
        let gateway = parse(&text, &[])
            .unwrap()
            .gateway_config()
            .unwrap()
            .unwrap();
        let scratch = gateway.buckets["scratch"];
        assert_eq!(scratch.write_type, WriteType::MustCache);
        assert_eq!((scratch.replicas, scratch.quorum), (1, 1));
        assert_eq!(
            gateway.buckets["stage-1"], gateway.default,
            "[buckets] exist"
        );
        assert!(
            !gateway.create_buckets,
            "no [persist] default: no buckets created"
        );
        assert_eq!(gateway.keys[0].access_key, "PIPELINE");
        assert!(
            !format!("{:?}", gateway.keys).contains("s3cr3t"),
            "secrets stay out of logs"
        );
        assert_eq!(
            (gateway.max_connections, gateway.header_timeout),
            (1024, Duration::from_secs(30)),
            "defaults"
        );
        let tuned = format!("{GOOD}{GATEWAY}max_connections = 8\nheader_timeout = \"5s\"\n");
        let tuned = parse(&tuned, &[])
            .unwrap()
            .gateway_config()
            .unwrap()
            .unwrap();
        assert_eq!(
            (tuned.max_connections, tuned.header_timeout),
            (8, Duration::from_secs(5))
        );
        assert!(
            parse(GOOD, &[])
                .unwrap()
                .gateway_config()
                .unwrap()
                .is_none()
        );
    }

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(
            Path::new("node.toml"),
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn a_good_file_with_human_units() {
        let config = parse(GOOD, &[]).unwrap();
        assert_eq!(config.me().name, "node-1");
        let node = config.node_config().unwrap();
        assert_eq!(node.pool.size_bytes, 512 << 20);
        assert_eq!(node.pool.chunk_size_bytes, 128 << 10);
        assert_eq!(node.pool.huge_pages, HugePagePolicy::TransparentOnly);
        assert_eq!(node.request_timeout, Duration::from_millis(2500));
        assert_eq!(
            node.store.unwrap().backpressure_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(
            config.default_replication().replicas,
            2,
            "defaults apply to what the file leaves out"
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let config = parse(
            GOOD,
            &[
                ("FDW__MEMORY__POOL_SIZE", "2GiB"),
                ("FDW__NODE__ID", "0"),
                ("OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(config.memory.pool_size, ByteSize::gib(2));
        assert_eq!(config.me().name, "node-0");
        let err = parse(GOOD, &[("FDW__NODE", "1")]).unwrap_err().to_string();
        assert!(err.contains("FDW__<SECTION>__<KEY>"), "{err}");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (GOOD.replace("pool_size", "pool_sise"), "pool_sise"),
            (GOOD.replace("\"512MiB\"", "\"lots\""), "pool_size"),
            (GOOD.replace("\"3s\"", "\"soon\""), "soon"),
            (
                GOOD.replace("id = 1\ncerts", "id = 7\ncerts"),
                "[node] id = 7",
            ),
            (
                GOOD.replace("s3://data/stage-1", "gs://x"),
                "[buckets] stage-1",
            ),
            (
                GOOD.replace("\"transparent\"", "\"sometimes\""),
                "huge-page policy",
            ),
            (
                GOOD.replace("name = \"node-1\"", "name = \"node-0\""),
                "share a name",
            ),
            (
                format!("{GOOD}\n[defaults]\nreplicas = 3\nquorum = 2\n"),
                "only 2 members",
            ),
            (
                format!("{GOOD}\n[gateway]\naddr = \"127.0.0.1:9000\"\n"),
                "[gateway] has no keys",
            ),
            (
                format!("{GOOD}{GATEWAY}max_connections = 0\n"),
                "[gateway] max_connections",
            ),
            (
                format!("{GOOD}{GATEWAY}[gateway.buckets.scratch]\nwrite_type = \"FAST\"\n"),
                "[gateway.buckets.scratch] write_type",
            ),
            (
                format!("{GOOD}{GATEWAY}[gateway.buckets.scratch]\nreplicas = 3\n"),
                "[gateway.buckets.scratch] replicas = 3",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text, &[]).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
            assert!(err.starts_with("node.toml"), "the file is named: {err}");
        }
    }
}
