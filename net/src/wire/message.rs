//! Request and response headers: the raw archived form (names as bytes, write types as
//! codes) and the typed form the rest of the code uses. Conversion from raw to typed is
//! where every field's meaning is checked.

use std::ops::{Range, RangeInclusive};

use rkyv::{Archive, Deserialize, Serialize, rancor, util::AlignedVec};

use super::digest::Digest;
use super::{
    MAX_COMPOSE_RUNS, MAX_ERROR_MESSAGE_BYTES, MAX_FRAME_BYTES, MAX_LIST_KEYS, MAX_LIST_PAGE_BYTES,
    MAX_OBJECT_BYTES, MAX_PART_NUMBER, MAX_REPLICAS, MAX_STATUS_MEMBERS, Metadata, WireError,
    frame_header, list_entry_bytes,
};
use crate::{BucketName, ObjectKey, Version, WriteType};

/// A bucket and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// The bucket.
    pub bucket: BucketName,
    /// The key.
    pub key: ObjectKey,
}

/// How many copies a write needs, and how it is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Write type.
    pub write_type: WriteType,
    /// Replicas R that hold the object.
    pub replicas: u8,
    /// Replicas W that must hold it before the write is acknowledged.
    pub quorum: u8,
}

impl Replication {
    /// Checks `1 <= quorum <= replicas <= MAX_REPLICAS`.
    pub fn new(write_type: WriteType, replicas: u8, quorum: u8) -> Result<Self, WireError> {
        if quorum == 0 || quorum > replicas || replicas > MAX_REPLICAS {
            return Err(WireError::InvalidReplication { replicas, quorum });
        }
        Ok(Self {
            write_type,
            replicas,
            quorum,
        })
    }

    /// These settings with some replaced. A quorum left out stays, lowered to fit fewer
    /// replicas.
    pub fn overridden(
        self,
        write_type: Option<WriteType>,
        replicas: Option<u8>,
        quorum: Option<u8>,
    ) -> Result<Self, WireError> {
        let replicas = replicas.unwrap_or(self.replicas);
        let quorum = quorum.unwrap_or(self.quorum.min(replicas));
        Self::new(write_type.unwrap_or(self.write_type), replicas, quorum)
    }
}

/// The header of a put; `len` bytes of data frames follow it, then the trailer with the
/// object's [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutHeader {
    /// Where.
    pub object: ObjectRef,
    /// Object size.
    pub len: u64,
    /// CRC32 of the whole object, when the sender knows it before sending (a whole-buffer
    /// put); a streaming put leaves it out and checks the CRC in the acknowledgement.
    /// Every frame carries its own CRC either way.
    pub crc: Option<u32>,
    /// Size of every data frame but the last: the cluster's chunk size.
    pub frame_bytes: u32,
    /// Copies and durability.
    pub replication: Replication,
    /// Set when a primary forwards to a replica.
    pub forwarded: Option<Forwarded>,
    /// The headers it is served with.
    pub metadata: Metadata,
    /// Checked by the primary before it stores anything; replicas are not sent it.
    pub condition: Option<WriteCondition>,
}

/// What a conditional write needs of the key's current version, checked by the key's
/// primary when the write begins, with no other write of the key in progress there.
/// ETags are digests of the bytes, as in S3: a version with the same bytes matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCondition {
    /// The key has no live version (S3's `If-None-Match: *`).
    Absent,
    /// The key has a live version (S3's `If-Match: *`).
    Present,
    /// The key's live version has this digest (S3's `If-Match: <ETag>`).
    Matches(Digest),
    /// The key has no live version, or one with another digest (S3's
    /// `If-None-Match: <ETag>`).
    NotMatches(Digest),
}

impl WriteCondition {
    /// Whether it holds of a key whose live version has the digest `live`.
    pub fn holds(self, live: Option<Digest>) -> bool {
        match self {
            WriteCondition::Absent => live.is_none(),
            WriteCondition::Present => live.is_some(),
            WriteCondition::Matches(d) => live == Some(d),
            WriteCondition::NotMatches(d) => live != Some(d),
        }
    }

    /// Whether it needs the key to exist: failing it on a missing key is `NotFound`.
    pub fn needs_the_key(self) -> bool {
        matches!(self, WriteCondition::Present | WriteCondition::Matches(_))
    }

    fn raw(condition: Option<Self>) -> Option<(u8, ([u8; 16], u16))> {
        condition.map(|c| match c {
            WriteCondition::Absent => (0, Digest::default().raw()),
            WriteCondition::Matches(d) => (1, d.raw()),
            WriteCondition::Present => (2, Digest::default().raw()),
            WriteCondition::NotMatches(d) => (3, d.raw()),
        })
    }

    fn typed(raw: Option<(u8, ([u8; 16], u16))>) -> Result<Option<Self>, WireError> {
        raw.map(|(code, digest)| match code {
            0 => Ok(WriteCondition::Absent),
            1 => Ok(WriteCondition::Matches(Digest::from_raw(digest)?)),
            2 => Ok(WriteCondition::Present),
            3 => Ok(WriteCondition::NotMatches(Digest::from_raw(digest)?)),
            other => Err(WireError::Malformed(format!(
                "unknown write condition {other}"
            ))),
        })
        .transpose()
    }
}

/// What a primary adds when it forwards a write to a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// The version it assigned.
    pub version: Version,
    /// The primary's id: the member that persists this version, unless it fails and
    /// another member takes over.
    pub primary: u16,
}

impl Forwarded {
    fn raw(forwarded: Option<Self>) -> Option<(u64, u16)> {
        forwarded.map(|f| (f.version.0, f.primary))
    }

    fn typed(raw: Option<(u64, u16)>) -> Option<Self> {
        raw.map(|(version, primary)| Self {
            version: Version(version),
            primary,
        })
    }
}

/// Stored objects to concatenate, in order: for every number in `runs`, the key `prefix`
/// followed by the number in five digits, in the composed object's bucket. Runs keep a
/// compose of thousands of parts within one header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedParts {
    prefix: String,
    runs: Vec<RangeInclusive<u16>>,
}

impl NumberedParts {
    /// The parts `numbers` (ascending, 1 to [`MAX_PART_NUMBER`]) under `prefix`.
    pub fn new(prefix: impl Into<String>, numbers: &[u16]) -> Result<Self, WireError> {
        let mut runs: Vec<RangeInclusive<u16>> = Vec::new();
        for &n in numbers {
            match runs.last_mut() {
                Some(run) if n.checked_sub(*run.end()) == Some(1) => {
                    *run = *run.start()..=n;
                }
                _ => runs.push(n..=n),
            }
        }
        Self::checked(prefix.into(), runs)
    }

    fn checked(prefix: String, runs: Vec<RangeInclusive<u16>>) -> Result<Self, WireError> {
        let invalid = |why: String| Err(WireError::InvalidParts(why));
        if runs.is_empty() {
            return invalid("no parts named".into());
        }
        if runs.len() > MAX_COMPOSE_RUNS {
            return invalid(format!(
                "{} runs of part numbers, over the limit of {MAX_COMPOSE_RUNS} (MAX_COMPOSE_RUNS)",
                runs.len()
            ));
        }
        let mut previous = 0;
        for run in &runs {
            if *run.start() <= previous || run.start() > run.end() || *run.end() > MAX_PART_NUMBER {
                return invalid(format!(
                    "part numbers {run:?} are not ascending within 1 to {MAX_PART_NUMBER} (MAX_PART_NUMBER)"
                ));
            }
            previous = *run.end();
        }
        // Every part's key has this one's length and characters: one check covers all.
        ObjectKey::new(Self::key(&prefix, MAX_PART_NUMBER))?;
        Ok(Self { prefix, runs })
    }

    /// Parts exactly as given, unchecked: for tests of the decoder's checks.
    #[cfg(test)]
    pub(super) fn unchecked(prefix: &str, runs: Vec<RangeInclusive<u16>>) -> Self {
        Self {
            prefix: prefix.into(),
            runs,
        }
    }

    /// The key of part `number` under `prefix`.
    pub fn key(prefix: &str, number: u16) -> String {
        format!("{prefix}{number:05}")
    }

    /// The parts' keys, in order (valid: the constructor checked them).
    pub fn keys(&self) -> impl Iterator<Item = ObjectKey> + '_ {
        self.runs.iter().flat_map(|run| run.clone()).map(|n| {
            ObjectKey::new(Self::key(&self.prefix, n)).expect("checked when the parts were made")
        })
    }
}

/// A compose: an object made of stored parts, each replica from its own copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeHeader {
    /// Where.
    pub object: ObjectRef,
    /// The parts, in order.
    pub parts: NumberedParts,
    /// The object's size: the parts' sizes summed.
    pub len: u64,
    /// The object's CRC32, combined from the parts'. A replica whose parts give another
    /// refuses to store it.
    pub crc: u32,
    /// Copies and durability.
    pub replication: Replication,
    /// Set when a primary forwards.
    pub forwarded: Option<Forwarded>,
    /// The headers the object is served with.
    pub metadata: Metadata,
    /// Checked by the primary before it composes; replicas are not sent it.
    pub condition: Option<WriteCondition>,
}

/// Bytes of an object to read, in the forms HTTP ranges take. The node holding the
/// object resolves it against the object's length, so a reader that does not know the
/// length (an S3 `bytes=-8` for a Parquet footer) needs one request, not two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ByteRange {
    /// From `start` up to, not including, `end`, cut at the object's end.
    Span(Range<u64>),
    /// From this byte to the object's end.
    From(u64),
    /// The last this many bytes, or the whole of a shorter object.
    Last(u64),
}

impl ByteRange {
    /// The bytes this names of an object of `len` bytes, as RFC 9110 resolves a range;
    /// `None` when it names none of them (HTTP's 416).
    pub fn resolve(&self, len: u64) -> Option<Range<u64>> {
        match *self {
            ByteRange::Span(ref span) => (span.start < len).then(|| span.start..span.end.min(len)),
            ByteRange::From(start) => (start < len).then_some(start..len),
            // An empty object has no last bytes: any range of it is a 416, as in S3.
            ByteRange::Last(n) => (n > 0 && len > 0).then(|| len - n.min(len)..len),
        }
    }
}

impl std::fmt::Display for ByteRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ByteRange::Span(span) => write!(f, "bytes {}..{}", span.start, span.end),
            ByteRange::From(start) => write!(f, "bytes {start}.."),
            ByteRange::Last(n) => write!(f, "the last {n} bytes"),
        }
    }
}

impl From<Range<u64>> for ByteRange {
    fn from(span: Range<u64>) -> Self {
        ByteRange::Span(span)
    }
}

/// A request, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Store an object; data frames follow.
    Put(PutHeader),
    /// Read an object, or a byte range of it.
    Get {
        /// Which object.
        object: ObjectRef,
        /// Bytes wanted; `None` for all.
        range: Option<ByteRange>,
        /// Whether to look in the under-store if this node does not know the key (the
        /// client's last resort, once no member knew it).
        under_store: bool,
    },
    /// Describe an object.
    Head {
        /// Which object.
        object: ObjectRef,
        /// As for `Get`.
        under_store: bool,
    },
    /// Delete a key (a replicated tombstone).
    Delete {
        /// Which key.
        object: ObjectRef,
        /// Copies and durability of the tombstone.
        replication: Replication,
        /// Set when a primary forwards.
        forwarded: Option<Forwarded>,
    },
    /// List keys of a bucket under a prefix, in key order, after `start_after`.
    List {
        /// The bucket.
        bucket: BucketName,
        /// Key prefix.
        prefix: String,
        /// Continue after this key.
        start_after: Option<String>,
        /// Page size.
        max_keys: u32,
    },
    /// Describe the node.
    Status,
    /// The primary tells a replica that the under-store has this version: its memory
    /// becomes evictable there too.
    Persisted {
        /// Which object.
        object: ObjectRef,
        /// Which version.
        version: Version,
    },
    /// The primary tells a member outside the replica set that a version was
    /// acknowledged and which members hold it, so that someone can name it as lost if
    /// every holder fails before it is persisted.
    Witness {
        /// Which object.
        object: ObjectRef,
        /// Which version.
        version: Version,
        /// The members that hold it (at most [`MAX_REPLICAS`](super::MAX_REPLICAS)).
        holders: Vec<u16>,
    },
    /// Store an object made of stored parts, each replica from its own copies (they are
    /// placed with the object: see [`placement`](crate::placement)).
    Compose(ComposeHeader),
}

/// What a failed request tells the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not enough replicas or a node is down: retry later.
    Unavailable,
    /// The request itself is wrong: fix it.
    InvalidInput,
    /// No such object.
    NotFound,
    /// Memory is full of unpersisted data: retry after the backlog drains.
    ClusterFull,
    /// Bytes did not match their checksum.
    DataCorruption,
    /// A bug or an unexpected failure.
    Internal,
    /// The key was deleted: this node holds its tombstone. Clients report it as
    /// `NotFound`; it tells them not to look further (in the under-store, which may
    /// still have the old version until the delete is persisted).
    Deleted,
    /// The version was acknowledged, but every member that held it failed before it was
    /// persisted: it is lost unless one of them comes back.
    Lost,
    /// The byte range asked for names no byte of the object (HTTP's 416).
    RangeNotSatisfiable,
    /// A conditional write's condition did not hold (HTTP's 412): nothing was stored.
    PreconditionFailed,
    /// A conditional write met another write of the key in progress (HTTP's 409):
    /// nothing was stored; try again.
    Conflict,
}

impl ErrorKind {
    const ALL: [ErrorKind; 11] = [
        ErrorKind::Unavailable,
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::ClusterFull,
        ErrorKind::DataCorruption,
        ErrorKind::Internal,
        ErrorKind::Deleted,
        ErrorKind::Lost,
        ErrorKind::RangeNotSatisfiable,
        ErrorKind::PreconditionFailed,
        ErrorKind::Conflict,
    ];

    fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|&k| k == self)
            .expect("every kind is in ALL") as u8
    }

    fn from_code(code: u8) -> Self {
        // An unknown kind from a newer peer is still an error; call it internal.
        Self::ALL
            .get(code as usize)
            .copied()
            .unwrap_or(ErrorKind::Internal)
    }
}

/// What `head` and `get` tell about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Where.
    pub object: ObjectRef,
    /// Which version.
    pub version: Version,
    /// Bytes sent: the object's size, or for a ranged read the range's.
    pub len: u64,
    /// CRC32 of the bytes sent: of the whole object, or of the range.
    pub crc: u32,
    /// Size of the whole object.
    pub object_len: u64,
    /// Where the bytes sent start in the object: 0 unless the read is ranged.
    pub offset: u64,
    /// Size of every data frame but the last.
    pub frame_bytes: u32,
    /// How it was written.
    pub write_type: WriteType,
    /// Whether the under-store has it.
    pub persisted: bool,
    /// Why its last upload failed, while it waits for the next try (primary only).
    pub persist_failure: Option<String>,
    /// Nodes holding it.
    pub replicas: Vec<u16>,
    /// The headers it was written with.
    pub metadata: Metadata,
    /// Its MD5, for its ETag.
    pub digest: Digest,
}

/// One key of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The key.
    pub key: ObjectKey,
    /// Its newest version.
    pub version: Version,
    /// Its size.
    pub len: u64,
    /// Its MD5, for its ETag (zero for a tombstone).
    pub digest: Digest,
    /// The newest version is a tombstone. Listings carry tombstones so that a merge
    /// across members drops a key whose newest version anywhere is a delete, instead of
    /// showing an older copy that a member still holds.
    pub deleted: bool,
}

/// A node's health and memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// Node id.
    pub node: u16,
    /// Pool page backing.
    pub backing: String,
    /// Chunk size, which is the frame size requests must use.
    pub frame_bytes: u32,
    /// Pool size.
    pub pool_bytes: u64,
    /// Memory pinned by unpersisted objects.
    pub pinned_bytes: u64,
    /// Memory held by persisted (evictable) objects.
    pub evictable_bytes: u64,
    /// Objects waiting to be persisted (or being persisted).
    pub backlog_objects: u64,
    /// Their bytes.
    pub backlog_bytes: u64,
    /// Age of the oldest, in milliseconds.
    pub backlog_oldest_ms: u64,
    /// Uploads this node has in flight.
    pub uploads_in_flight: u32,
    /// Uploads finished since start.
    pub uploads_done: u64,
    /// Upload attempts that failed since start (each is tried again).
    pub upload_failures: u64,
    /// The last failure's reason.
    pub last_upload_failure: Option<String>,
    /// How this node sees every other member, by its heartbeats.
    pub members: Vec<MemberHealth>,
    /// Changes every time the node's process starts (with empty memory), so that its
    /// peers can tell a restart from a pause.
    pub incarnation: u64,
    /// What the node did for objects whose members failed.
    pub recovery: RecoveryStatus,
}

/// What a node did to restore the owner and the copies of unpersisted objects after
/// members failed, since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryStatus {
    /// Objects whose primary failed that this node took over (it persists them now).
    pub taken_over: u64,
    /// Copies it sent to members that lacked them.
    pub copies_made: u64,
    /// Their bytes.
    pub copy_bytes: u64,
    /// Unpersisted objects it is primary for that have fewer live copies than their R,
    /// as of its last pass.
    pub under_replicated: u64,
    /// Member losses (deaths and restarts) it has seen.
    pub losses_seen: u64,
    /// The losses its last complete pass covered: up to then, every unpersisted object
    /// it holds had an owner and R live copies. Equal to `losses_seen` once it has
    /// recovered from every loss.
    pub losses_restored: u64,
    /// Acknowledged versions this node witnessed whose every holder failed before they
    /// were persisted (each is named in the log and by `head`).
    pub lost_objects: u64,
}

impl RecoveryStatus {
    /// The counters in their archived order.
    fn raw(&self) -> [u64; 7] {
        [
            self.taken_over,
            self.copies_made,
            self.copy_bytes,
            self.under_replicated,
            self.losses_seen,
            self.losses_restored,
            self.lost_objects,
        ]
    }

    fn from_raw(raw: [u64; 7]) -> Self {
        let [
            taken_over,
            copies_made,
            copy_bytes,
            under_replicated,
            losses_seen,
            losses_restored,
            lost_objects,
        ] = raw;
        Self {
            taken_over,
            copies_made,
            copy_bytes,
            under_replicated,
            losses_seen,
            losses_restored,
            lost_objects,
        }
    }
}

/// One member as another sees it through heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberHealth {
    /// The member's id.
    pub id: u16,
    /// Whether it answered a heartbeat within the failure timeout.
    pub alive: bool,
    /// How long it has been in that state, in milliseconds.
    pub since_ms: u64,
}

/// A response, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A put or delete is acknowledged.
    Stored {
        /// The version assigned.
        version: Version,
        /// CRC32 stored.
        crc: u32,
        /// The digest stored: for a put or a compose, not a delete.
        digest: Option<Digest>,
        /// Nodes holding it at acknowledgement.
        replicas: Vec<u16>,
    },
    /// An object's description; for `get`, its data frames follow.
    Object(ObjectInfo),
    /// A page of keys.
    Listing {
        /// Keys in order.
        entries: Vec<ListEntry>,
        /// Where the next page starts, if there is one.
        next_start_after: Option<String>,
    },
    /// A node's status.
    Status(NodeStatus),
    /// The request failed.
    Error {
        /// What to do about it.
        kind: ErrorKind,
        /// What happened.
        message: String,
    },
}

// ---- raw forms, as archived ----

#[derive(Archive, Serialize, Deserialize)]
struct RawReplication {
    write_type: u8,
    replicas: u8,
    quorum: u8,
}

#[derive(Archive, Serialize, Deserialize)]
enum RawRequest {
    Put {
        bucket: Vec<u8>,
        key: Vec<u8>,
        len: u64,
        crc: Option<u32>,
        frame_bytes: u32,
        replication: RawReplication,
        forwarded: Option<(u64, u16)>,
        metadata: Vec<(Vec<u8>, Vec<u8>)>,
        condition: Option<(u8, ([u8; 16], u16))>,
    },
    Get {
        bucket: Vec<u8>,
        key: Vec<u8>,
        range: Option<RawByteRange>,
        under_store: bool,
    },
    Head {
        bucket: Vec<u8>,
        key: Vec<u8>,
        under_store: bool,
    },
    Delete {
        bucket: Vec<u8>,
        key: Vec<u8>,
        replication: RawReplication,
        forwarded: Option<(u64, u16)>,
    },
    List {
        bucket: Vec<u8>,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        max_keys: u32,
    },
    Status,
    Persisted {
        bucket: Vec<u8>,
        key: Vec<u8>,
        version: u64,
    },
    Witness {
        bucket: Vec<u8>,
        key: Vec<u8>,
        version: u64,
        holders: Vec<u16>,
    },
    Compose {
        bucket: Vec<u8>,
        key: Vec<u8>,
        prefix: Vec<u8>,
        runs: Vec<(u16, u16)>,
        len: u64,
        crc: u32,
        replication: RawReplication,
        forwarded: Option<(u64, u16)>,
        metadata: Vec<(Vec<u8>, Vec<u8>)>,
        condition: Option<(u8, ([u8; 16], u16))>,
    },
}

#[derive(Archive, Serialize, Deserialize)]
struct RawMemberHealth {
    id: u16,
    alive: bool,
    since_ms: u64,
}

#[derive(Archive, Serialize, Deserialize)]
enum RawByteRange {
    Span(u64, u64),
    From(u64),
    Last(u64),
}

#[derive(Archive, Serialize, Deserialize)]
struct RawObjectInfo {
    bucket: Vec<u8>,
    key: Vec<u8>,
    version: u64,
    len: u64,
    crc: u32,
    object_len: u64,
    offset: u64,
    frame_bytes: u32,
    write_type: u8,
    persisted: bool,
    persist_failure: Option<Vec<u8>>,
    replicas: Vec<u16>,
    metadata: Vec<(Vec<u8>, Vec<u8>)>,
    digest: ([u8; 16], u16),
}

#[derive(Archive, Serialize, Deserialize)]
struct RawListEntry {
    key: Vec<u8>,
    version: u64,
    len: u64,
    digest: ([u8; 16], u16),
    deleted: bool,
}

#[derive(Archive, Serialize, Deserialize)]
enum RawResponse {
    Stored {
        version: u64,
        crc: u32,
        digest: Option<([u8; 16], u16)>,
        replicas: Vec<u16>,
    },
    Object(RawObjectInfo),
    Listing {
        entries: Vec<RawListEntry>,
        next_start_after: Option<Vec<u8>>,
    },
    Status {
        node: u16,
        backing: Vec<u8>,
        frame_bytes: u32,
        pool_bytes: u64,
        pinned_bytes: u64,
        evictable_bytes: u64,
        backlog_objects: u64,
        backlog_bytes: u64,
        backlog_oldest_ms: u64,
        uploads_in_flight: u32,
        uploads_done: u64,
        upload_failures: u64,
        last_upload_failure: Option<Vec<u8>>,
        members: Vec<RawMemberHealth>,
        incarnation: u64,
        recovery: [u64; 7],
    },
    Error {
        kind: u8,
        message: Vec<u8>,
    },
}

// ---- field conversions ----

fn write_type_code(t: WriteType) -> u8 {
    WriteType::ALL
        .iter()
        .position(|&w| w == t)
        .expect("every write type is in ALL") as u8
}

fn write_type(code: u8) -> Result<WriteType, WireError> {
    WriteType::ALL
        .get(code as usize)
        .copied()
        .ok_or(WireError::UnknownWriteType(code))
}

fn text(bytes: Vec<u8>, field: &'static str) -> Result<String, WireError> {
    String::from_utf8(bytes).map_err(|_| WireError::InvalidUtf8 { field })
}

fn object_ref(bucket: Vec<u8>, key: Vec<u8>) -> Result<ObjectRef, WireError> {
    Ok(ObjectRef {
        bucket: BucketName::new(text(bucket, "bucket name")?)?,
        key: ObjectKey::new(text(key, "object key")?)?,
    })
}

fn raw_replication(r: &Replication) -> RawReplication {
    RawReplication {
        write_type: write_type_code(r.write_type),
        replicas: r.replicas,
        quorum: r.quorum,
    }
}

fn replication(r: RawReplication) -> Result<Replication, WireError> {
    Replication::new(write_type(r.write_type)?, r.replicas, r.quorum)
}

fn name_bytes(object: &ObjectRef) -> (Vec<u8>, Vec<u8>) {
    (
        object.bucket.as_str().as_bytes().to_vec(),
        object.key.as_str().as_bytes().to_vec(),
    )
}

fn check_object_len(len: u64) -> Result<(), WireError> {
    if len > MAX_OBJECT_BYTES {
        Err(WireError::ObjectTooLarge { len })
    } else {
        Ok(())
    }
}

fn check_frame_bytes(frame_bytes: u32) -> Result<(), WireError> {
    if frame_bytes == 0 || frame_bytes > MAX_FRAME_BYTES {
        Err(WireError::InvalidFrameSize(frame_bytes))
    } else {
        Ok(())
    }
}

/// Validates the archive, then deserializes it: no field is read before bytecheck has
/// proven the whole header well-formed.
fn unarchive<T>(header: &[u8]) -> Result<T, WireError>
where
    T: Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    // rkyv needs the archive aligned; the network buffer is not.
    let mut aligned = AlignedVec::<16>::with_capacity(header.len());
    aligned.extend_from_slice(header);
    let archived = rkyv::access::<T::Archived, rancor::Error>(&aligned)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    rkyv::deserialize::<T, rancor::Error>(archived).map_err(|e| WireError::Malformed(e.to_string()))
}

fn archive<T>(value: &T) -> Vec<u8>
where
    T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rancor::Error,
            >,
        >,
{
    let header = rkyv::to_bytes::<rancor::Error>(value)
        .expect("archiving plain owned data into memory cannot fail");
    frame_header(&header)
}

impl Request {
    /// The request as bytes: preamble and header (data frames, if any, follow).
    pub fn encode(&self) -> Vec<u8> {
        let raw = match self {
            Request::Put(put) => {
                let (bucket, key) = name_bytes(&put.object);
                RawRequest::Put {
                    bucket,
                    key,
                    len: put.len,
                    crc: put.crc,
                    frame_bytes: put.frame_bytes,
                    replication: raw_replication(&put.replication),
                    forwarded: Forwarded::raw(put.forwarded),
                    metadata: put.metadata.raw(),
                    condition: WriteCondition::raw(put.condition),
                }
            }
            Request::Get {
                object,
                range,
                under_store,
            } => {
                let (bucket, key) = name_bytes(object);
                RawRequest::Get {
                    bucket,
                    key,
                    range: range.as_ref().map(|r| match r {
                        ByteRange::Span(span) => RawByteRange::Span(span.start, span.end),
                        ByteRange::From(start) => RawByteRange::From(*start),
                        ByteRange::Last(n) => RawByteRange::Last(*n),
                    }),
                    under_store: *under_store,
                }
            }
            Request::Head {
                object,
                under_store,
            } => {
                let (bucket, key) = name_bytes(object);
                RawRequest::Head {
                    bucket,
                    key,
                    under_store: *under_store,
                }
            }
            Request::Delete {
                object,
                replication,
                forwarded,
            } => {
                let (bucket, key) = name_bytes(object);
                RawRequest::Delete {
                    bucket,
                    key,
                    replication: raw_replication(replication),
                    forwarded: Forwarded::raw(*forwarded),
                }
            }
            Request::List {
                bucket,
                prefix,
                start_after,
                max_keys,
            } => RawRequest::List {
                bucket: bucket.as_str().as_bytes().to_vec(),
                prefix: prefix.as_bytes().to_vec(),
                start_after: start_after.as_ref().map(|s| s.as_bytes().to_vec()),
                max_keys: *max_keys,
            },
            Request::Status => RawRequest::Status,
            Request::Persisted { object, version } => {
                let (bucket, key) = name_bytes(object);
                RawRequest::Persisted {
                    bucket,
                    key,
                    version: version.0,
                }
            }
            Request::Witness {
                object,
                version,
                holders,
            } => {
                let (bucket, key) = name_bytes(object);
                RawRequest::Witness {
                    bucket,
                    key,
                    version: version.0,
                    holders: holders.clone(),
                }
            }
            Request::Compose(compose) => {
                let (bucket, key) = name_bytes(&compose.object);
                let parts = &compose.parts;
                RawRequest::Compose {
                    bucket,
                    key,
                    prefix: parts.prefix.as_bytes().to_vec(),
                    runs: parts.runs.iter().map(|r| (*r.start(), *r.end())).collect(),
                    len: compose.len,
                    crc: compose.crc,
                    replication: raw_replication(&compose.replication),
                    forwarded: Forwarded::raw(compose.forwarded),
                    metadata: compose.metadata.raw(),
                    condition: WriteCondition::raw(compose.condition),
                }
            }
        };
        archive(&raw)
    }

    pub(super) fn decode_header(header: &[u8]) -> Result<Self, WireError> {
        Ok(match unarchive::<RawRequest>(header)? {
            RawRequest::Put {
                bucket,
                key,
                len,
                crc,
                frame_bytes,
                replication: r,
                forwarded,
                metadata,
                condition,
            } => {
                check_object_len(len)?;
                check_frame_bytes(frame_bytes)?;
                Request::Put(PutHeader {
                    object: object_ref(bucket, key)?,
                    len,
                    crc,
                    frame_bytes,
                    replication: replication(r)?,
                    forwarded: Forwarded::typed(forwarded),
                    metadata: Metadata::from_raw(metadata)?,
                    condition: WriteCondition::typed(condition)?,
                })
            }
            RawRequest::Get {
                bucket,
                key,
                range,
                under_store,
            } => {
                let range = match range {
                    None => None,
                    Some(RawByteRange::Span(start, end)) if end < start => {
                        return Err(WireError::InvalidRange { start, end });
                    }
                    Some(RawByteRange::Span(start, end)) => Some(ByteRange::Span(start..end)),
                    Some(RawByteRange::From(start)) => Some(ByteRange::From(start)),
                    Some(RawByteRange::Last(n)) => Some(ByteRange::Last(n)),
                };
                Request::Get {
                    object: object_ref(bucket, key)?,
                    range,
                    under_store,
                }
            }
            RawRequest::Head {
                bucket,
                key,
                under_store,
            } => Request::Head {
                object: object_ref(bucket, key)?,
                under_store,
            },
            RawRequest::Delete {
                bucket,
                key,
                replication: r,
                forwarded,
            } => Request::Delete {
                object: object_ref(bucket, key)?,
                replication: replication(r)?,
                forwarded: Forwarded::typed(forwarded),
            },
            RawRequest::List {
                bucket,
                prefix,
                start_after,
                max_keys,
            } => {
                if max_keys == 0 || max_keys > MAX_LIST_KEYS {
                    return Err(WireError::InvalidMaxKeys(max_keys));
                }
                Request::List {
                    bucket: BucketName::new(text(bucket, "bucket name")?)?,
                    prefix: text(prefix, "prefix")?,
                    start_after: start_after.map(|s| text(s, "start_after")).transpose()?,
                    max_keys,
                }
            }
            RawRequest::Status => Request::Status,
            RawRequest::Persisted {
                bucket,
                key,
                version,
            } => Request::Persisted {
                object: object_ref(bucket, key)?,
                version: Version(version),
            },
            RawRequest::Witness {
                bucket,
                key,
                version,
                holders,
            } => {
                if holders.len() > usize::from(MAX_REPLICAS) {
                    return Err(WireError::TooManyHolders(holders.len()));
                }
                Request::Witness {
                    object: object_ref(bucket, key)?,
                    version: Version(version),
                    holders,
                }
            }
            RawRequest::Compose {
                bucket,
                key,
                prefix,
                runs,
                len,
                crc,
                replication: r,
                forwarded,
                metadata,
                condition,
            } => {
                check_object_len(len)?;
                let runs = runs.into_iter().map(|(start, end)| start..=end).collect();
                Request::Compose(ComposeHeader {
                    object: object_ref(bucket, key)?,
                    parts: NumberedParts::checked(text(prefix, "parts prefix")?, runs)?,
                    len,
                    crc,
                    replication: replication(r)?,
                    forwarded: Forwarded::typed(forwarded),
                    metadata: Metadata::from_raw(metadata)?,
                    condition: WriteCondition::typed(condition)?,
                })
            }
        })
    }
}

impl Response {
    /// A listing page of `entries` (in key order): at most `max_keys` of them, and no
    /// more than fit in [`MAX_LIST_PAGE_BYTES`]. When entries are left over, the page
    /// says where the next one starts; a page is never cut without saying so.
    pub fn listing(entries: impl IntoIterator<Item = ListEntry>, max_keys: u32) -> Self {
        let mut entries = entries.into_iter().peekable();
        let (mut page, mut bytes) = (Vec::new(), 0);
        while let Some(next) = entries.peek() {
            let cost = list_entry_bytes(next.key.as_str().len());
            let full = page.len() >= max_keys as usize
                || (!page.is_empty() && bytes + cost > MAX_LIST_PAGE_BYTES);
            if full {
                break;
            }
            bytes += cost;
            page.extend(entries.next());
        }
        let next_start_after = match (entries.peek(), page.last()) {
            (Some(_), Some(last)) => Some(last.key.to_string()),
            _ => None,
        };
        Response::Listing {
            entries: page,
            next_start_after,
        }
    }

    /// An error response, its message cut to [`MAX_ERROR_MESSAGE_BYTES`].
    pub fn error(kind: ErrorKind, message: impl std::fmt::Display) -> Self {
        let mut message = message.to_string();
        if message.len() > MAX_ERROR_MESSAGE_BYTES {
            let mut cut = MAX_ERROR_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Response::Error { kind, message }
    }

    /// The response as bytes: preamble and header (data frames, if any, follow).
    pub fn encode(&self) -> Vec<u8> {
        let raw = match self {
            Response::Stored {
                version,
                crc,
                digest,
                replicas,
            } => RawResponse::Stored {
                version: version.0,
                crc: *crc,
                digest: digest.map(|d| d.raw()),
                replicas: replicas.clone(),
            },
            Response::Object(info) => {
                let (bucket, key) = name_bytes(&info.object);
                RawResponse::Object(RawObjectInfo {
                    bucket,
                    key,
                    version: info.version.0,
                    len: info.len,
                    crc: info.crc,
                    object_len: info.object_len,
                    offset: info.offset,
                    frame_bytes: info.frame_bytes,
                    write_type: write_type_code(info.write_type),
                    persisted: info.persisted,
                    persist_failure: info.persist_failure.as_ref().map(|m| m.as_bytes().to_vec()),
                    replicas: info.replicas.clone(),
                    metadata: info.metadata.raw(),
                    digest: info.digest.raw(),
                })
            }
            Response::Listing {
                entries,
                next_start_after,
            } => RawResponse::Listing {
                entries: entries
                    .iter()
                    .map(|e| RawListEntry {
                        key: e.key.as_str().as_bytes().to_vec(),
                        version: e.version.0,
                        len: e.len,
                        digest: e.digest.raw(),
                        deleted: e.deleted,
                    })
                    .collect(),
                next_start_after: next_start_after.as_ref().map(|s| s.as_bytes().to_vec()),
            },
            Response::Status(s) => RawResponse::Status {
                node: s.node,
                backing: s.backing.as_bytes().to_vec(),
                frame_bytes: s.frame_bytes,
                pool_bytes: s.pool_bytes,
                pinned_bytes: s.pinned_bytes,
                evictable_bytes: s.evictable_bytes,
                backlog_objects: s.backlog_objects,
                backlog_bytes: s.backlog_bytes,
                backlog_oldest_ms: s.backlog_oldest_ms,
                uploads_in_flight: s.uploads_in_flight,
                uploads_done: s.uploads_done,
                upload_failures: s.upload_failures,
                last_upload_failure: s
                    .last_upload_failure
                    .as_ref()
                    .map(|m| m.as_bytes().to_vec()),
                members: s
                    .members
                    .iter()
                    .map(|m| RawMemberHealth {
                        id: m.id,
                        alive: m.alive,
                        since_ms: m.since_ms,
                    })
                    .collect(),
                incarnation: s.incarnation,
                recovery: s.recovery.raw(),
            },
            Response::Error { kind, message } => RawResponse::Error {
                kind: kind.code(),
                message: message.as_bytes().to_vec(),
            },
        };
        archive(&raw)
    }

    pub(super) fn decode_header(header: &[u8]) -> Result<Self, WireError> {
        Ok(match unarchive::<RawResponse>(header)? {
            RawResponse::Stored {
                version,
                crc,
                digest,
                replicas,
            } => Response::Stored {
                version: Version(version),
                crc,
                digest: digest.map(Digest::from_raw).transpose()?,
                replicas,
            },
            RawResponse::Object(info) => {
                check_object_len(info.object_len)?;
                check_frame_bytes(info.frame_bytes)?;
                if info
                    .offset
                    .checked_add(info.len)
                    .is_none_or(|end| end > info.object_len)
                {
                    return Err(WireError::RangePastEnd {
                        offset: info.offset,
                        len: info.len,
                        object_len: info.object_len,
                    });
                }
                Response::Object(ObjectInfo {
                    object: object_ref(info.bucket, info.key)?,
                    version: Version(info.version),
                    len: info.len,
                    crc: info.crc,
                    object_len: info.object_len,
                    offset: info.offset,
                    frame_bytes: info.frame_bytes,
                    write_type: write_type(info.write_type)?,
                    persisted: info.persisted,
                    persist_failure: info
                        .persist_failure
                        .map(|m| String::from_utf8_lossy(&m).into_owned()),
                    replicas: info.replicas,
                    metadata: Metadata::from_raw(info.metadata)?,
                    digest: Digest::from_raw(info.digest)?,
                })
            }
            RawResponse::Listing {
                entries,
                next_start_after,
            } => {
                if entries.len() > MAX_LIST_KEYS as usize {
                    return Err(WireError::InvalidMaxKeys(entries.len() as u32));
                }
                let entries = entries
                    .into_iter()
                    .map(|e| {
                        Ok(ListEntry {
                            key: ObjectKey::new(text(e.key, "object key")?)?,
                            version: Version(e.version),
                            len: e.len,
                            digest: Digest::from_raw(e.digest)?,
                            deleted: e.deleted,
                        })
                    })
                    .collect::<Result<Vec<_>, WireError>>()?;
                let next_start_after = next_start_after
                    .map(|s| text(s, "next_start_after"))
                    .transpose()?;
                // The client merges pages across members by key: they must be ordered.
                for pair in entries.windows(2) {
                    if pair[0].key >= pair[1].key {
                        return Err(WireError::ListingOutOfOrder(pair[1].key.to_string()));
                    }
                }
                if let (Some(next), Some(last)) = (&next_start_after, entries.last())
                    && next.as_str() < last.key.as_str()
                {
                    return Err(WireError::ListingOutOfOrder(next.clone()));
                }
                Response::Listing {
                    entries,
                    next_start_after,
                }
            }
            RawResponse::Status {
                node,
                backing,
                frame_bytes,
                pool_bytes,
                pinned_bytes,
                evictable_bytes,
                backlog_objects,
                backlog_bytes,
                backlog_oldest_ms,
                uploads_in_flight,
                uploads_done,
                upload_failures,
                last_upload_failure,
                members,
                incarnation,
                recovery,
            } => Response::Status(NodeStatus {
                node,
                backing: text(backing, "backing")?,
                frame_bytes: {
                    check_frame_bytes(frame_bytes)?;
                    frame_bytes
                },
                pool_bytes,
                pinned_bytes,
                evictable_bytes,
                backlog_objects,
                backlog_bytes,
                backlog_oldest_ms,
                uploads_in_flight,
                uploads_done,
                upload_failures,
                last_upload_failure: last_upload_failure
                    .map(|m| String::from_utf8_lossy(&m).into_owned()),
                members: {
                    if members.len() > MAX_STATUS_MEMBERS {
                        return Err(WireError::TooManyMembers(members.len()));
                    }
                    members
                        .into_iter()
                        .map(|m| MemberHealth {
                            id: m.id,
                            alive: m.alive,
                            since_ms: m.since_ms,
                        })
                        .collect()
                },
                incarnation,
                recovery: RecoveryStatus::from_raw(recovery),
            }),
            RawResponse::Error { kind, message } => Response::Error {
                kind: ErrorKind::from_code(kind),
                message: String::from_utf8_lossy(&message).into_owned(),
            },
        })
    }
}

#[cfg(test)]
pub(super) mod tests_support {
    use super::*;

    /// An archived put header with arbitrary raw fields, for tests of validation.
    pub(in crate::wire) fn raw_put(
        bucket: &[u8],
        key: &[u8],
        replicas: u8,
        quorum: u8,
        write_type: u8,
    ) -> Vec<u8> {
        let raw = RawRequest::Put {
            bucket: bucket.to_vec(),
            key: key.to_vec(),
            len: 10,
            crc: None,
            frame_bytes: 4096,
            replication: RawReplication {
                write_type,
                replicas,
                quorum,
            },
            forwarded: None,
            metadata: Vec::new(),
            condition: None,
        };
        rkyv::to_bytes::<rancor::Error>(&raw).unwrap().to_vec()
    }
}
