//! The wire protocol: what one QUIC stream carries.
//!
//! A message is a *preamble* — magic, protocol version, header length — then an
//! rkyv-archived *header*, then, for messages that carry object bytes, *data frames*:
//!
//! ```text
//! | "fdw\0" | version u16 LE | header_len u32 LE | header (rkyv) | frame | frame | ...
//! frame = | len u32 LE | crc32 u32 LE | len bytes |
//! ```
//!
//! A put's frames are followed by a trailer: the object's MD5 ([`Digest`], its S3 ETag),
//! which the writer knows only once the last byte has streamed past.
//!
//! Every frame but the last is exactly `frame_bytes` long, and `frame_bytes` is the
//! cluster's chunk size, so a frame is one pool chunk and its CRC — computed once, by the
//! client — is verified on every hop and stored as the chunk's CRC (invariant 3).
//!
//! Headers are untrusted input. [`decode_request`] and [`decode_response`] check the
//! preamble and the size limit, validate the archive (bytecheck) before reading a field,
//! and then check every field's meaning (names, write types, quorum) before returning a
//! typed value. Every limit is a named constant that appears in the error it produces.

mod digest;
mod frame;
mod message;
mod metadata;
mod part_sizes;
#[cfg(test)]
mod tests;

pub use digest::{Digest, Hasher as DigestHasher, TRAILER_BYTES};
pub use frame::{FRAME_HEADER_BYTES, FrameHeader, combined_crc, frame_count, frame_crcs};
pub use message::{
    ByteRange, ComposeHeader, ErrorKind, Forwarded, ListEntry, MemberHealth, NodeStatus,
    NumberedParts, ObjectInfo, ObjectRef, PutHeader, RecoveryStatus, Replication, Request,
    Response, WriteCondition,
};
pub use metadata::{MAX_METADATA_BYTES, Metadata, RESERVED_HEADER_PREFIX};
pub use part_sizes::{MAX_PART_SIZES_BYTES, PartChecksums, PartSizes};

use crate::NameError;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 7;
/// First bytes of every message.
pub const MAGIC: [u8; 4] = *b"fdw\0";
/// Magic, version and header length.
pub const PREAMBLE_BYTES: usize = 10;
/// Largest request header accepted.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Largest response header accepted: a listing page is the largest response, and the
/// node that answers keeps it under [`MAX_LIST_PAGE_BYTES`].
pub const MAX_RESPONSE_HEADER_BYTES: usize = 1024 * 1024;
/// The encoded size a node keeps one listing page under: it stops adding keys before
/// the next would pass it, and says where the listing resumes. A page is never cut to
/// fit, so it always holds at least one key.
pub const MAX_LIST_PAGE_BYTES: usize = 512 * 1024;
/// Largest data frame (and so the largest chunk size a cluster may use).
pub const MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;
/// Largest object: S3's limit, so every fdw object can be persisted.
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Most replicas an object may ask for.
pub const MAX_REPLICAS: u8 = 7;
/// Most keys one list response carries.
pub const MAX_LIST_KEYS: u32 = 1000;
/// Most members one status response describes.
pub const MAX_STATUS_MEMBERS: usize = 256;
/// Longest error message carried back to a peer.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 2048;
/// Highest part number a compose may name: S3's, and five digits in a part's key.
pub const MAX_PART_NUMBER: u16 = 10_000;
/// Most runs of consecutive part numbers one compose may name.
pub const MAX_COMPOSE_RUNS: usize = 512;

const _: () =
    assert!(crate::MAX_KEY_BYTES * 2 + crate::MAX_BUCKET_NAME_BYTES + 512 < MAX_HEADER_BYTES);
// A full listing page, its resume key and the envelope fit in a response.
const _: () = assert!(
    MAX_LIST_PAGE_BYTES + list_entry_bytes(crate::MAX_KEY_BYTES) + 1024 < MAX_RESPONSE_HEADER_BYTES
);

/// An upper bound on the encoded size of one listing entry with a key of `key_bytes`:
/// the key (padded to the archive's alignment), its relative pointer and length, the
/// version, the length, the digest and the tombstone flag.
/// `listing_pages_stay_under_their_budget` checks it against the encoder.
pub const fn list_entry_bytes(key_bytes: usize) -> usize {
    key_bytes + 72
}
// A compose: the object's names, the parts' prefix and the runs of numbers.
const _: () = assert!(
    crate::MAX_KEY_BYTES * 2 + crate::MAX_BUCKET_NAME_BYTES + MAX_COMPOSE_RUNS * 4 + 512
        < MAX_HEADER_BYTES
);

/// Why bytes from the network were refused. Each variant is one cause, and each limit
/// is named in its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The stream does not start with [`MAGIC`].
    #[error("not an fdw message: magic bytes {0:02x?}")]
    BadMagic([u8; 4]),
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {got}: this worker speaks version {PROTOCOL_VERSION}")]
    UnsupportedVersion {
        /// The version the peer sent.
        got: u16,
    },
    /// Header longer than [`MAX_HEADER_BYTES`] (a request) or
    /// [`MAX_RESPONSE_HEADER_BYTES`] (a response).
    #[error("header of {len} bytes is over the limit of {limit} bytes ({name})")]
    HeaderTooLarge {
        /// Declared length.
        len: usize,
        /// The limit it broke.
        limit: usize,
        /// The limit's name.
        name: &'static str,
    },
    /// Fewer bytes than the message needs.
    #[error("message truncated: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The header is not a valid archive of the expected type.
    #[error("malformed header: {0}")]
    Malformed(String),
    /// A name field is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which field.
        field: &'static str,
    },
    /// A bucket name or key broke a naming rule.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// A write type code this build does not know.
    #[error("unknown write type code {0}")]
    UnknownWriteType(u8),
    /// Replicas or quorum out of range.
    #[error(
        "replicas {replicas} and quorum {quorum} are invalid: need 1 <= quorum <= replicas <= {MAX_REPLICAS} (MAX_REPLICAS)"
    )]
    InvalidReplication {
        /// Requested replicas.
        replicas: u8,
        /// Requested quorum.
        quorum: u8,
    },
    /// An object's metadata broke a rule (names, size: [`MAX_METADATA_BYTES`]).
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    /// A listing whose keys are not in strictly increasing order, or that resumes
    /// before its last key: merging it would drop or repeat keys.
    #[error("listing out of order at key {0:?}")]
    ListingOutOfOrder(String),
    /// Object larger than [`MAX_OBJECT_BYTES`].
    #[error(
        "object of {len} bytes is over the limit of {MAX_OBJECT_BYTES} bytes (MAX_OBJECT_BYTES)"
    )]
    ObjectTooLarge {
        /// Declared length.
        len: u64,
    },
    /// Frame size zero or over [`MAX_FRAME_BYTES`].
    #[error("frame size {0} is invalid: it must be 1 to {MAX_FRAME_BYTES} bytes (MAX_FRAME_BYTES)")]
    InvalidFrameSize(u32),
    /// A data frame of the wrong length for its position.
    #[error("data frame {index} is {len} bytes; expected {expected}")]
    FrameLength {
        /// Position of the frame in the object.
        index: u64,
        /// Its length.
        len: u32,
        /// The length it must have.
        expected: u32,
    },
    /// A list page larger than [`MAX_LIST_KEYS`], or zero.
    #[error("max_keys {0} is invalid: it must be 1 to {MAX_LIST_KEYS} (MAX_LIST_KEYS)")]
    InvalidMaxKeys(u32),
    /// A status describing more than [`MAX_STATUS_MEMBERS`] members.
    #[error(
        "status lists {0} members, over the limit of {MAX_STATUS_MEMBERS} (MAX_STATUS_MEMBERS)"
    )]
    TooManyMembers(usize),
    /// A witness naming more than [`MAX_REPLICAS`] holders.
    #[error("a witness names {0} holders, over the limit of {MAX_REPLICAS} (MAX_REPLICAS)")]
    TooManyHolders(usize),
    /// Parts to compose that break a rule: none, out of order, numbered outside 1 to
    /// [`MAX_PART_NUMBER`], in more than [`MAX_COMPOSE_RUNS`] runs, or with a prefix that
    /// makes no valid key.
    #[error("invalid parts to compose: {0}")]
    InvalidParts(String),
    /// A byte range that is empty the wrong way round.
    #[error("range {start}..{end} ends before it starts")]
    InvalidRange {
        /// Start.
        start: u64,
        /// End.
        end: u64,
    },
    /// An answer whose bytes run past the end of the object they are of.
    #[error("{len} bytes from offset {offset} run past the object's {object_len} bytes")]
    RangePastEnd {
        /// Where the bytes start.
        offset: u64,
        /// How many.
        len: u64,
        /// The object's size.
        object_len: u64,
    },
}

/// Prepends the preamble to an archived header.
fn frame_header(header: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREAMBLE_BYTES + header.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    out
}

/// Which side of a stream a message is: each has its own header limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A request: at most [`MAX_HEADER_BYTES`].
    Request,
    /// A response: at most [`MAX_RESPONSE_HEADER_BYTES`].
    Response,
}

impl Direction {
    fn limit(self) -> (usize, &'static str) {
        match self {
            Direction::Request => (MAX_HEADER_BYTES, "MAX_HEADER_BYTES"),
            Direction::Response => (MAX_RESPONSE_HEADER_BYTES, "MAX_RESPONSE_HEADER_BYTES"),
        }
    }
}

/// Checks a preamble and returns the header length that follows it.
pub fn decode_preamble(
    preamble: &[u8; PREAMBLE_BYTES],
    direction: Direction,
) -> Result<usize, WireError> {
    let magic: [u8; 4] = preamble[0..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = u16::from_le_bytes(preamble[4..6].try_into().expect("2 bytes"));
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion { got: version });
    }
    let len = u32::from_le_bytes(preamble[6..10].try_into().expect("4 bytes")) as usize;
    let (limit, name) = direction.limit();
    if len > limit {
        return Err(WireError::HeaderTooLarge { len, limit, name });
    }
    Ok(len)
}

/// Splits a whole message (preamble + header) into its header bytes.
fn split_message(bytes: &[u8], direction: Direction) -> Result<&[u8], WireError> {
    let preamble: &[u8; PREAMBLE_BYTES] = bytes
        .get(..PREAMBLE_BYTES)
        .and_then(|p| p.try_into().ok())
        .ok_or(WireError::Truncated {
            needed: PREAMBLE_BYTES,
            got: bytes.len(),
        })?;
    let len = decode_preamble(preamble, direction)?;
    let needed = PREAMBLE_BYTES + len;
    if bytes.len() != needed {
        return Err(WireError::Truncated {
            needed,
            got: bytes.len(),
        });
    }
    Ok(&bytes[PREAMBLE_BYTES..])
}

/// Decodes and validates a request: preamble and header, nothing after.
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    Request::decode_header(split_message(bytes, Direction::Request)?)
}

/// Decodes and validates a response: preamble and header, nothing after.
pub fn decode_response(bytes: &[u8]) -> Result<Response, WireError> {
    Response::decode_header(split_message(bytes, Direction::Response)?)
}
