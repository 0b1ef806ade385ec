//! QUIC transport: quinn endpoints with mutual TLS, tuned for large transfers, and the
//! helpers that move messages and data frames over one stream.
//!
//! One stream carries one request and its response. A connection per peer is kept and
//! reused by the callers; quinn multiplexes streams over it.

mod peers;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

pub use peers::Peers;
pub use tls::{ALPN, ClusterCa, NodeIdentity, TlsError};

use crate::wire::{
    self, Digest, Direction, FRAME_HEADER_BYTES, FrameHeader, PREAMBLE_BYTES, Request, Response,
    TRAILER_BYTES, WireError,
};

/// Flow-control windows and limits of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportTuning {
    /// Bytes a peer may send on one stream before we read them: this is the bound on
    /// data frames in flight per request (window ÷ frame size).
    pub stream_window_bytes: u32,
    /// Bytes a peer may have in flight on a whole connection.
    pub connection_window_bytes: u32,
    /// Bytes we keep in flight towards one peer.
    pub send_window_bytes: u64,
    /// Requests one peer may have open at once.
    pub max_concurrent_streams: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Keep-alive interval, well below `idle_timeout`.
    pub keep_alive: Duration,
    /// Largest UDP payload MTU discovery may probe up to (loopback and jumbo-frame
    /// networks carry far more than the 1452-byte default).
    pub max_udp_payload_bytes: u16,
}

impl Default for TransportTuning {
    fn default() -> Self {
        Self {
            stream_window_bytes: 16 * 1024 * 1024,
            connection_window_bytes: 64 * 1024 * 1024,
            send_window_bytes: 64 * 1024 * 1024,
            max_concurrent_streams: 256,
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            max_udp_payload_bytes: 1452,
        }
    }
}

impl TransportTuning {
    fn config(&self) -> Result<quinn::TransportConfig, TransportError> {
        let mut config = quinn::TransportConfig::default();
        config
            .stream_receive_window(self.stream_window_bytes.into())
            .receive_window(self.connection_window_bytes.into())
            .send_window(self.send_window_bytes)
            .max_concurrent_bidi_streams(self.max_concurrent_streams.into())
            .max_concurrent_uni_streams(0u32.into())
            .keep_alive_interval(Some(self.keep_alive))
            .max_idle_timeout(Some(self.idle_timeout.try_into().map_err(|_| {
                TransportError::Config(format!("idle timeout {:?} is too long", self.idle_timeout))
            })?));
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.max_udp_payload_bytes.max(1200));
        config.mtu_discovery_config(Some(mtu));
        Ok(config)
    }
}

/// Why the transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Certificates or TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// An inconsistent setting.
    #[error("transport configuration: {0}")]
    Config(String),
    /// Binding the UDP socket failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A connection could not be started.
    #[error("connecting to {name} at {addr}: {source}")]
    Connect {
        /// The peer's name.
        name: String,
        /// Its address.
        addr: SocketAddr,
        /// What quinn said.
        source: quinn::ConnectError,
    },
    /// A connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to a stream failed.
    #[error("writing to the stream: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading from a stream failed.
    #[error("reading from the stream: {0}")]
    Read(#[from] quinn::ReadError),
    /// The peer sent nothing for too long.
    #[error("no data within {0:?}")]
    Stalled(Duration),
    /// The stream ended before the message did.
    #[error("the stream ended mid-message: the peer sent fewer bytes than it announced")]
    Truncated,
    /// The peer sent bytes the protocol does not allow.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer sent bytes where the stream had to end.
    #[error("the peer sent data after the request, which has none")]
    Unexpected,
}

impl From<quinn::ReadExactError> for TransportError {
    fn from(err: quinn::ReadExactError) -> Self {
        match err {
            quinn::ReadExactError::FinishedEarly(_) => TransportError::Truncated,
            quinn::ReadExactError::ReadError(e) => TransportError::Read(e),
        }
    }
}

/// A server endpoint on `socket` presenting `identity` and requiring client certificates
/// from the same CA. It can also open connections to other nodes.
pub fn server_endpoint(
    identity: &NodeIdentity,
    socket: std::net::UdpSocket,
    tuning: &TransportTuning,
) -> Result<quinn::Endpoint, TransportError> {
    let crypto = QuicServerConfig::try_from(identity.server_crypto()?)
        .map_err(|e| TlsError::NoInitialCipherSuite(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(tuning.config()?));
    let addr = socket.local_addr().map_err(|source| TransportError::Bind {
        addr: ([0, 0, 0, 0], 0).into(),
        source,
    })?;
    let runtime = Arc::new(quinn::TokioRuntime);
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
    .map_err(|source| TransportError::Bind { addr, source })?;
    endpoint.set_default_client_config(client_config(identity, tuning)?);
    Ok(endpoint)
}

/// Binds a UDP socket for [`server_endpoint`].
pub fn bind(addr: SocketAddr) -> Result<std::net::UdpSocket, TransportError> {
    std::net::UdpSocket::bind(addr).map_err(|source| TransportError::Bind { addr, source })
}

/// A client-only endpoint bound to `bind` (use port 0).
pub fn client_endpoint(
    identity: &NodeIdentity,
    bind: SocketAddr,
    tuning: &TransportTuning,
) -> Result<quinn::Endpoint, TransportError> {
    let mut endpoint = quinn::Endpoint::client(bind)
        .map_err(|source| TransportError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(client_config(identity, tuning)?);
    Ok(endpoint)
}

fn client_config(
    identity: &NodeIdentity,
    tuning: &TransportTuning,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::try_from(identity.client_crypto()?)
        .map_err(|e| TlsError::NoInitialCipherSuite(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(tuning.config()?));
    Ok(config)
}

/// Connects to the node named `name` (its certificate's subject) at `addr`.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    name: &str,
    addr: SocketAddr,
) -> Result<quinn::Connection, TransportError> {
    let connecting = endpoint
        .connect(addr, name)
        .map_err(|source| TransportError::Connect {
            name: name.to_owned(),
            addr,
            source,
        })?;
    Ok(connecting.await?)
}

/// Reads one message's preamble and header from `recv`: exactly the bytes the
/// preamble announces, never more than the direction's limit (`MAX_HEADER_BYTES`,
/// `MAX_RESPONSE_HEADER_BYTES`).
async fn read_message(
    recv: &mut quinn::RecvStream,
    direction: Direction,
) -> Result<Vec<u8>, TransportError> {
    let mut preamble = [0u8; PREAMBLE_BYTES];
    recv.read_exact(&mut preamble).await?;
    let len = wire::decode_preamble(&preamble, direction)?;
    let mut message = vec![0u8; PREAMBLE_BYTES + len];
    message[..PREAMBLE_BYTES].copy_from_slice(&preamble);
    recv.read_exact(&mut message[PREAMBLE_BYTES..]).await?;
    Ok(message)
}

/// Runs a read of peer data, giving up with [`TransportError::Stalled`] after `limit`: a
/// stalled peer never holds a task (and its pool memory) for longer than that.
pub async fn within<T>(
    limit: Duration,
    read: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| TransportError::Stalled(limit))?
}

/// Reads and validates a request header.
pub async fn read_request(recv: &mut quinn::RecvStream) -> Result<Request, TransportError> {
    Ok(wire::decode_request(
        &read_message(recv, Direction::Request).await?,
    )?)
}

/// Reads and validates a response header.
pub async fn read_response(recv: &mut quinn::RecvStream) -> Result<Response, TransportError> {
    Ok(wire::decode_response(
        &read_message(recv, Direction::Response).await?,
    )?)
}

/// Writes an encoded message (request or response header).
pub async fn write_message(
    send: &mut quinn::SendStream,
    message: &[u8],
) -> Result<(), TransportError> {
    Ok(send.write_all(message).await?)
}

/// Writes one data frame whose CRC the caller already has (computed once, at the client).
pub async fn write_frame(
    send: &mut quinn::SendStream,
    crc: u32,
    data: &[u8],
) -> Result<(), TransportError> {
    let header = FrameHeader {
        len: data.len() as u32,
        crc,
    }
    .encode();
    send.write_all(&header).await?;
    Ok(send.write_all(data).await?)
}

/// Writes one data frame held in shared buffers (a client's `Bytes`, or the buffers a
/// primary received it in) without copying them: quinn keeps a reference until the
/// peer acknowledges the bytes, so forwarding a frame costs no memmove.
pub async fn write_frame_bytes(
    send: &mut quinn::SendStream,
    crc: u32,
    data: &[Bytes],
) -> Result<(), TransportError> {
    let header = FrameHeader {
        len: data.iter().map(Bytes::len).sum::<usize>() as u32,
        crc,
    }
    .encode();
    let mut pieces = Vec::with_capacity(data.len() + 1);
    pieces.push(Bytes::copy_from_slice(&header));
    pieces.extend(data.iter().cloned());
    Ok(send.write_all_chunks(&mut pieces).await?)
}

/// Writes a put's trailer: the object's digest, after its last data frame.
pub async fn write_trailer(
    send: &mut quinn::SendStream,
    digest: &Digest,
) -> Result<(), TransportError> {
    Ok(send.write_all(&digest.encode_trailer()).await?)
}

/// Reads and checks a put's trailer.
pub async fn read_trailer(recv: &mut quinn::RecvStream) -> Result<Digest, TransportError> {
    let mut trailer = [0u8; TRAILER_BYTES];
    recv.read_exact(&mut trailer).await?;
    Ok(Digest::decode_trailer(&trailer)?)
}

/// Reads the header of data frame `index` of an object, checking its length.
pub async fn read_frame_header(
    recv: &mut quinn::RecvStream,
    index: u64,
    object_len: u64,
    frame_bytes: u32,
) -> Result<FrameHeader, TransportError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    recv.read_exact(&mut header).await?;
    Ok(FrameHeader::decode(
        &header,
        index,
        object_len,
        frame_bytes,
    )?)
}

/// Reads exactly `buf.len()` bytes of frame data straight into `buf` (pool memory).
pub async fn read_frame_data(
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
) -> Result<(), TransportError> {
    Ok(recv.read_exact(buf).await?)
}

/// Reads exactly `len` bytes of frame data as the buffers quinn received them in (no
/// copy), appending them to `out`.
pub async fn read_frame_bytes(
    recv: &mut quinn::RecvStream,
    len: usize,
    out: &mut Vec<Bytes>,
) -> Result<(), TransportError> {
    let mut left = len;
    while left > 0 {
        let chunk = recv
            .read_chunk(left, true)
            .await?
            .ok_or(TransportError::Truncated)?;
        left -= chunk.bytes.len();
        out.push(chunk.bytes);
    }
    Ok(())
}

/// Waits for the peer to finish its side of the stream, sending nothing more: how a
/// primary tells a replica that a write needing no data frames (a compose) may commit.
/// A reset (the primary gave the write up) is an error.
pub async fn read_end(recv: &mut quinn::RecvStream) -> Result<(), TransportError> {
    match recv.read_chunk(1, true).await? {
        None => Ok(()),
        Some(_) => Err(TransportError::Unexpected),
    }
}

#[cfg(test)]
mod tests;
