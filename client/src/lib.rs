//! The fdw client SDK.
//!
//! ```no_run
//! # async fn example(members: Vec<fdw_client::Member>, identity: fdw_client::NodeIdentity) -> Result<(), fdw_client::Error> {
//! let client = fdw_client::Client::connect(fdw_client::ClientConfig::new(members), &identity).await?;
//! let receipt = client.put("stage-1", "part-0.parquet", b"bytes").await?;
//! assert_eq!(client.get("stage-1", "part-0.parquet").await?, b"bytes");
//! # Ok(()) }
//! ```
//!
//! The SDK depends only on `fdw-net`, never on the daemon. A put is acknowledged once W
//! replicas hold the complete object in memory, every frame's CRC checked on arrival;
//! every get checks every frame's CRC and the whole object's. Errors carry a kind that
//! says what to do ([`Error::kind`], [`Error::is_retryable`]).

mod client;
mod error;
mod hashing;
mod listing;

pub use client::{Client, ClientConfig, ListPage, ObjectStream, PutOptions, PutReceipt};
pub use error::{Error, ErrorKind};
pub use fdw_net::placement::Member;
pub use fdw_net::transport::{ClusterCa, NodeIdentity, TransportTuning};
pub use fdw_net::wire::{
    ByteRange, ListEntry, Metadata, NodeStatus, ObjectInfo, Replication, WriteCondition,
};
pub use fdw_net::{BucketName, NameError, ObjectKey, Version, WriteType};
