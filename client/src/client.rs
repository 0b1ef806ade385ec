//! The client: connects to the cluster's members, routes each call by the same
//! rendezvous placement the workers use, and checks every byte it receives.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fdw_net::placement::{Member, Placement};
use fdw_net::transport::{self, NodeIdentity, Peers, TransportError, TransportTuning};
use fdw_net::wire::{
    ByteRange, ComposeHeader, Digest, ErrorKind, ListEntry, Metadata, NodeStatus, NumberedParts,
    ObjectInfo, ObjectRef, PutHeader, Replication, Request, Response, WriteCondition, combined_crc,
    frame_count, frame_crcs,
};
use fdw_net::{BucketName, ObjectKey, Version, WriteType};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Error;
use crate::hashing::FrameHasher;
use crate::listing::{MemberPage, merge};

/// How the client reaches the cluster and what it asks for by default.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The cluster's members.
    pub members: Vec<Member>,
    /// Replicas, quorum and write type of puts and deletes unless a call says otherwise.
    pub replication: Replication,
    /// Longest wait for a handshake before a member counts as down.
    pub connect_timeout: Duration,
    /// Longest wait for a response.
    pub request_timeout: Duration,
    /// QUIC tuning.
    pub tuning: TransportTuning,
}

impl ClientConfig {
    /// Defaults: R=2, W=2 (or fewer, for a smaller cluster), `ASYNC_THROUGH`.
    pub fn new(members: Vec<Member>) -> Self {
        let r = members.len().clamp(1, 2) as u8;
        Self {
            members,
            replication: Replication {
                write_type: WriteType::AsyncThrough,
                replicas: r,
                quorum: r,
            },
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            tuning: TransportTuning::default(),
        }
    }
}

/// How one put is made: its copies and durability, and the headers (`Content-Type`,
/// `x-amz-meta-*`) it is served with. A [`Replication`] alone is a put without metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// Copies and durability.
    pub replication: Replication,
    /// Stored with the object, returned by `head` and `get`.
    pub metadata: Metadata,
    /// Stores only if the key's current version is as said; else `PreconditionFailed`
    /// (or `Conflict` while another write of the key is in progress), storing nothing.
    pub condition: Option<WriteCondition>,
    /// The digest to store instead of the MD5 of the bytes, which are then not hashed:
    /// a copy keeps its source's, a multipart upload streamed together S3's multipart
    /// form. A compose ignores it: each replica computes the parts' own.
    pub digest: Option<Digest>,
}

impl From<Replication> for PutOptions {
    fn from(replication: Replication) -> Self {
        Self {
            replication,
            metadata: Metadata::empty(),
            condition: None,
            digest: None,
        }
    }
}

/// What an acknowledged put or delete tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    /// The version the primary assigned.
    pub version: Version,
    /// CRC32 of the object as stored.
    pub crc: u32,
    /// The object's MD5 as stored (its S3 ETag); `None` for a delete.
    pub digest: Option<Digest>,
    /// Nodes that held it when the write was acknowledged (at least W).
    pub replicas: Vec<u16>,
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Keys in order, each with its newest version.
    pub entries: Vec<ListEntry>,
    /// Pass as `start_after` for the next page; `None` on the last.
    pub next_start_after: Option<String>,
}

struct Inner {
    peers: Peers,
    placement: Placement,
    config: ClientConfig,
    frame_bytes: u32,
}

/// A connection to an fdw cluster. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn unavailable(member: &Member, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("node {} ({}): {what}", member.id, member.addr),
    )
}

fn transport_error(member: &Member, err: TransportError) -> Error {
    match err {
        TransportError::Wire(wire) => Error::new(
            ErrorKind::Internal,
            format!("node {} sent an invalid response: {wire}", member.id),
        ),
        other => unavailable(member, other),
    }
}

fn unexpected(request: &str, response: &Response) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("unexpected response to {request}: {response:?}"),
    )
}

fn refused(kind: ErrorKind, message: String) -> Error {
    Error::new(kind, message)
}

impl Client {
    /// Connects to the cluster and learns its chunk (frame) size from the first member
    /// that answers.
    pub async fn connect(config: ClientConfig, identity: &NodeIdentity) -> Result<Self, Error> {
        let first = config
            .members
            .first()
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "no members given"))?;
        let bind: SocketAddr = if first.addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let endpoint = transport::client_endpoint(identity, bind, &config.tuning)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        let mut client = Self {
            inner: Arc::new(Inner {
                peers: Peers::new(endpoint, config.connect_timeout),
                placement: Placement::new(config.members.clone()),
                config,
                frame_bytes: 0,
            }),
        };
        let mut last_error = None;
        for member in client.inner.placement.members() {
            match client.status_of(member).await {
                Ok(status) => {
                    Arc::get_mut(&mut client.inner)
                        .expect("not shared yet")
                        .frame_bytes = status.frame_bytes;
                    return Ok(client);
                }
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::new(ErrorKind::Unavailable, "no member answered")))
    }

    /// The cluster's frame (chunk) size.
    pub fn frame_bytes(&self) -> u32 {
        self.inner.frame_bytes
    }

    async fn connection(&self, member: &Member) -> Result<quinn::Connection, Error> {
        self.inner
            .peers
            .connection(member)
            .await
            .map_err(|e| unavailable(member, e))
    }

    /// Opens a stream to `member` and sends `request`'s header.
    async fn open(
        &self,
        member: &Member,
        request: &Request,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), Error> {
        let connection = self.connection(member).await?;
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| unavailable(member, e))?;
        transport::write_message(&mut send, &request.encode())
            .await
            .map_err(|e| transport_error(member, e))?;
        Ok((send, recv))
    }

    async fn response(
        &self,
        member: &Member,
        recv: &mut quinn::RecvStream,
    ) -> Result<Response, Error> {
        let timeout = self.inner.config.request_timeout;
        tokio::time::timeout(timeout, transport::read_response(recv))
            .await
            .map_err(|_| {
                // It may have died without closing: the next call connects afresh.
                self.inner.peers.drop_connection(member.id);
                unavailable(member, format!("no response within {timeout:?}"))
            })?
            .map_err(|e| transport_error(member, e))
    }

    /// Sends a header-only request to `member` and reads the response.
    async fn call(&self, member: &Member, request: &Request) -> Result<Response, Error> {
        let (mut send, mut recv) = self.open(member, request).await?;
        let _ = send.finish();
        self.response(member, &mut recv).await
    }

    /// The object's members in preference order, those whose last handshake just failed
    /// moved to the end: tried last, never skipped.
    fn preference_list(&self, object: &ObjectRef) -> Vec<&Member> {
        let members = self
            .inner
            .placement
            .preference_list(&object.bucket, &object.key);
        self.inner.peers.reachable_first(members)
    }

    /// Writes go to the object's primary: the first member of its preference list that
    /// takes the request (members that cannot be reached are skipped: hand-off). Once a
    /// member has the request, its answer is final, so a write is never sent twice.
    async fn open_primary(
        &self,
        object: &ObjectRef,
        request: &Request,
    ) -> Result<(&Member, quinn::SendStream, quinn::RecvStream), Error> {
        let mut last_error = None;
        for member in self.preference_list(object) {
            match self.open(member, request).await {
                Ok((send, recv)) => return Ok((member, send, recv)),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error
            .unwrap_or_else(|| Error::new(ErrorKind::Unavailable, "the cluster has no members")))
    }

    /// Reads go to the object's members in preference order until one answers: a member
    /// that does not have the object (`NotFound`, `Deleted`) or cannot serve now
    /// (`Unavailable`) is skipped; any other answer is final. If every member answered
    /// that it does not know the key at all (after restarts, no memory may hold a
    /// persisted object), the first is asked once more to look in the under-store. Not
    /// if one holds a tombstone (the under-store may still have the deleted version) or
    /// witnessed the version lost (the under-store may have an older one).
    async fn first_answer<'a, T, F, Fut>(
        &'a self,
        object: &ObjectRef,
        mut attempt: F,
    ) -> Result<T, Error>
    where
        F: FnMut(&'a Member, bool) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let members = self.preference_list(object);
        let mut last_error = None;
        let mut lost = None;
        let mut nobody_knows = !members.is_empty();
        for member in &members {
            match attempt(member, false).await {
                Ok(answer) => return Ok(answer),
                Err(err) if err.kind() == ErrorKind::NotFound => last_error = Some(err),
                Err(err) if err.kind() == ErrorKind::Lost => {
                    nobody_knows = false;
                    lost = Some(err)
                }
                Err(err) if matches!(err.kind(), ErrorKind::Deleted | ErrorKind::Unavailable) => {
                    nobody_knows = false;
                    last_error = Some(err)
                }
                Err(err) => return Err(err),
            }
        }
        if nobody_knows && let Some(first) = members.first() {
            return attempt(first, true)
                .await
                .map_err(Error::deleted_as_not_found);
        }
        // A witness's word that the version is lost explains more than any absence.
        Err(lost
            .or(last_error)
            .map(Error::deleted_as_not_found)
            .unwrap_or_else(|| Error::new(ErrorKind::Unavailable, "the cluster has no members")))
    }

    fn object(bucket: &str, key: &str) -> Result<ObjectRef, Error> {
        Ok(ObjectRef {
            bucket: BucketName::new(bucket)?,
            key: ObjectKey::new(key)?,
        })
    }

    /// Stores `data` under `bucket/key` with the default replication.
    pub async fn put(&self, bucket: &str, key: &str, data: &[u8]) -> Result<PutReceipt, Error> {
        self.put_with(bucket, key, data, self.inner.config.replication)
            .await
    }

    /// Stores `data` with explicit replication. Acknowledged once `replication.quorum`
    /// replicas hold the complete, checksummed object in memory.
    pub async fn put_with(
        &self,
        bucket: &str,
        key: &str,
        data: &[u8],
        options: impl Into<PutOptions>,
    ) -> Result<PutReceipt, Error> {
        self.put_held(bucket, key, Held::Borrowed(data), options.into())
            .await
    }

    /// As [`put_with`](Self::put_with), sending `data`'s frames by reference: the bytes
    /// are never copied on their way into the transport.
    pub async fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        options: impl Into<PutOptions>,
    ) -> Result<PutReceipt, Error> {
        self.put_held(bucket, key, Held::Shared(data), options.into())
            .await
    }

    async fn put_held(
        &self,
        bucket: &str,
        key: &str,
        data: Held<'_>,
        options: PutOptions,
    ) -> Result<PutReceipt, Error> {
        let frame = self.inner.frame_bytes as usize;
        let bytes = data.as_slice();
        // One CRC per frame, computed once, here; the object CRC is combined from them.
        let (crcs, crc) = frame_crcs(bytes, frame);
        let len = bytes.len() as u64;
        let mut source: FrameSource<'_, &[u8]> = FrameSource::Buffer { data, crcs };
        self.put_frames(bucket, key, len, Some(crc), &mut source, options)
            .await
    }

    /// Stores `len` bytes read from `reader`, sending each frame as soon as it is read:
    /// memory use is one frame, whatever the object's size.
    pub async fn put_stream<R: AsyncRead + Unpin>(
        &self,
        bucket: &str,
        key: &str,
        len: u64,
        reader: R,
        options: impl Into<PutOptions>,
    ) -> Result<PutReceipt, Error> {
        let mut source = FrameSource::Reader {
            reader,
            whole: crc32fast::Hasher::new(),
        };
        let receipt = self
            .put_frames(bucket, key, len, None, &mut source, options.into())
            .await?;
        if let FrameSource::Reader { whole, .. } = source
            && whole.finalize() != receipt.crc
        {
            return Err(Error::new(
                ErrorKind::DataCorruption,
                format!("{bucket}/{key}: stored CRC differs from the bytes sent"),
            ));
        }
        Ok(receipt)
    }

    async fn put_frames<R: AsyncRead + Unpin>(
        &self,
        bucket: &str,
        key: &str,
        len: u64,
        crc: Option<u32>,
        source: &mut FrameSource<'_, R>,
        options: PutOptions,
    ) -> Result<PutReceipt, Error> {
        let object = Self::object(bucket, key)?;
        let PutOptions {
            replication,
            metadata,
            condition,
            digest: given,
        } = options;
        let replication = Replication::new(
            replication.write_type,
            replication.replicas,
            replication.quorum,
        )?;
        let header = PutHeader {
            object: object.clone(),
            len,
            crc,
            frame_bytes: self.inner.frame_bytes,
            replication,
            forwarded: None,
            metadata,
            condition,
        };
        let request = Request::Put(header);
        let (member, mut send, mut recv) = self.open_primary(&object, &request).await?;
        let frames = frame_count(len, self.inner.frame_bytes);
        let mut md5 = FrameHasher::new(given, frames);
        for index in 0..frames {
            let (bytes, crc) = source.frame(index, len, self.inner.frame_bytes).await?;
            let sent = transport::write_frame_bytes(&mut send, crc, std::slice::from_ref(&bytes));
            if let Err(err) = sent.await {
                return Err(self.refusal_or(member, &mut recv, err).await);
            }
            md5.update(&bytes).await;
        }
        let digest = md5.finish().await?;
        if let Err(err) = transport::write_trailer(&mut send, &digest).await {
            return Err(self.refusal_or(member, &mut recv, err).await);
        }
        let _ = send.finish();
        let receipt = self.receipt(member, &mut recv, "put").await?;
        // Superseded on arrival, a put is stored nowhere and no digest is said.
        if receipt.digest.is_some_and(|stored| stored != digest) {
            return Err(Error::new(
                ErrorKind::DataCorruption,
                format!(
                    "{bucket}/{key}: stored MD5 {:?} differs from the bytes sent ({digest})",
                    receipt.digest
                ),
            ));
        }
        Ok(PutReceipt {
            digest: Some(digest),
            ..receipt
        })
    }

    /// Why a write's stream broke: the primary may have refused early (full, bad input),
    /// and its answer says why better than the broken stream does.
    async fn refusal_or(
        &self,
        member: &Member,
        recv: &mut quinn::RecvStream,
        err: TransportError,
    ) -> Error {
        match self.response(member, recv).await {
            Ok(Response::Error { kind, message }) => refused(kind, message),
            _ => transport_error(member, err),
        }
    }

    /// The primary's answer to a write: its receipt, or why it failed.
    async fn receipt(
        &self,
        member: &Member,
        recv: &mut quinn::RecvStream,
        what: &str,
    ) -> Result<PutReceipt, Error> {
        match self.response(member, recv).await? {
            Response::Stored {
                version,
                crc,
                digest,
                replicas,
            } => Ok(PutReceipt {
                version,
                crc,
                digest,
                replicas,
            }),
            Response::Error { kind, message } => Err(refused(kind, message)),
            other => Err(unexpected(what, &other)),
        }
    }

    /// The whole object.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, Error> {
        Ok(self.read(bucket, key, None).await?.1)
    }

    /// Bytes `range` of the object, cut at its end; an error if `range` starts past it.
    pub async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
    ) -> Result<Vec<u8>, Error> {
        Ok(self.read(bucket, key, Some(range.into())).await?.1)
    }

    /// The object, or bytes `range` of it, with what the answering replica said of the
    /// bytes sent: their version, where they start, and their length and CRC32 (of the
    /// range, for a range), beside the whole object's length.
    pub async fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<(ObjectInfo, Vec<u8>), Error> {
        const MAX_UP_FRONT_BYTES: u64 = 64 * 1024 * 1024;
        let mut stream = self.read_stream(bucket, key, range).await?;
        // Grow with the data rather than trusting a length from the network up front.
        let mut out = Vec::with_capacity(stream.info().len.min(MAX_UP_FRONT_BYTES) as usize);
        while let Some(frame) = stream.next_frame().await {
            out.extend_from_slice(&frame?);
        }
        Ok((stream.info, out))
    }

    /// As [`read`](Self::read), handing the bytes over frame by frame as they arrive:
    /// memory use is one frame, whatever the size. Replicas are tried in preference
    /// order until one starts answering; after that, an error ends the stream.
    pub async fn read_stream(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectStream, Error> {
        let object = Self::object(bucket, key)?;
        // Replicas first, in preference order.
        self.first_answer(&object, |member, under_store| {
            let request = Request::Get {
                object: object.clone(),
                range: range.clone(),
                under_store,
            };
            async move {
                let (mut send, mut recv) = self.open(member, &request).await?;
                let _ = send.finish();
                match self.response(member, &mut recv).await? {
                    Response::Object(info) => Ok(ObjectStream {
                        frames: frame_count(info.len, info.frame_bytes),
                        info,
                        member: member.clone(),
                        recv,
                        next: 0,
                        whole: crc32fast::Hasher::new(),
                        timeout: self.inner.config.request_timeout,
                    }),
                    Response::Error { kind, message } => Err(refused(kind, message)),
                    other => Err(unexpected("get", &other)),
                }
            }
        })
        .await
    }

    /// What the newest version of the object is and where it is.
    pub async fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, Error> {
        let object = Self::object(bucket, key)?;
        self.first_answer(&object, |member, under_store| {
            let request = Request::Head {
                object: object.clone(),
                under_store,
            };
            async move {
                match self.call(member, &request).await? {
                    Response::Object(info) => Ok(info),
                    Response::Error { kind, message } => Err(refused(kind, message)),
                    other => Err(unexpected("head", &other)),
                }
            }
        })
        .await
    }

    /// Waits until the under-store has `version` of the object, or a newer one, checking
    /// every 20 ms for up to `timeout`. On timeout the error says why the upload has not
    /// finished, if the primary knows.
    pub async fn wait_persisted(
        &self,
        bucket: &str,
        key: &str,
        version: Version,
        timeout: Duration,
    ) -> Result<ObjectInfo, Error> {
        // The last upload failure seen, to explain a timeout.
        let mut last = None;
        let waited = tokio::time::timeout(timeout, async {
            loop {
                // Every holder answers for itself; the primary knows about failures.
                match self.head(bucket, key).await {
                    // A newer version replaced it: that one is what persists.
                    Ok(info)
                        if info.version > version
                            || (info.persisted && info.version == version) =>
                    {
                        return Ok(info);
                    }
                    Ok(info) => {
                        if let Some(failure) = info.persist_failure {
                            last = Some(failure);
                        }
                    }
                    Err(err) if err.kind() == ErrorKind::NotFound => {}
                    Err(err) => return Err(err),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            let why = last.take();
            Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{bucket}/{key}@{version} is not persisted after {timeout:?}{}",
                    why.map(|w| format!("; last upload failure: {w}"))
                        .unwrap_or_default()
                ),
            ))
        })
    }

    /// Deletes the key: a tombstone replicated like a put.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<Version, Error> {
        self.delete_with(bucket, key, self.inner.config.replication)
            .await
    }

    /// Deletes the key with these replicas, quorum and write type. Use the replication
    /// the key was written with: a member past the delete's replicas keeps the older
    /// version, and a read that finds no answer on the others may get it there.
    pub async fn delete_with(
        &self,
        bucket: &str,
        key: &str,
        replication: Replication,
    ) -> Result<Version, Error> {
        let object = Self::object(bucket, key)?;
        let request = Request::Delete {
            object: object.clone(),
            replication,
            forwarded: None,
        };
        let (member, mut send, mut recv) = self.open_primary(&object, &request).await?;
        let _ = send.finish();
        match self.response(member, &mut recv).await? {
            Response::Stored { version, .. } => Ok(version),
            Response::Error { kind, message } => Err(refused(kind, message)),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Stores `key` as the concatenation of objects already stored in `bucket`: for each
    /// `(number, len, crc)` of `parts`, in order, the object
    /// [`NumberedParts::key`]`(prefix, number)` with that length and CRC, as the caller
    /// found them. The parts must be staged keys placed with `key`
    /// ([`staged_name`](fdw_net::placement::staged_name)): each replica composes from its
    /// own copies, so no byte crosses the network. A replica lacking a part, or whose
    /// parts differ from those described, stores nothing; too few copies is
    /// `Unavailable`, as for a put.
    pub async fn compose(
        &self,
        bucket: &str,
        key: &str,
        prefix: &str,
        parts: &[(u16, u64, u32)],
        options: impl Into<PutOptions>,
    ) -> Result<PutReceipt, Error> {
        let PutOptions {
            replication,
            metadata,
            condition,
            digest: _,
        } = options.into();
        let object = Self::object(bucket, key)?;
        let numbers: Vec<u16> = parts.iter().map(|(number, ..)| *number).collect();
        let request = Request::Compose(ComposeHeader {
            object: object.clone(),
            parts: NumberedParts::new(prefix, &numbers)?,
            len: parts.iter().map(|(_, len, _)| len).sum(),
            crc: combined_crc(parts.iter().map(|(_, len, crc)| (*crc, *len))),
            replication,
            forwarded: None,
            metadata,
            condition,
        });
        let (member, mut send, mut recv) = self.open_primary(&object, &request).await?;
        let _ = send.finish();
        self.receipt(member, &mut recv, "compose").await
    }

    /// Up to `max_keys` keys of `bucket` under `prefix` after `start_after`, merged
    /// across every member that answers (newest version wins, deleted keys left out):
    /// fewer only when the listing ends, which `next_start_after` being `None` says.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, Error> {
        let mut page = ListPage {
            entries: Vec::new(),
            next_start_after: start_after.map(str::to_owned),
        };
        loop {
            let want = max_keys - page.entries.len() as u32;
            let more = self
                .list_round(bucket, prefix, page.next_start_after.as_deref(), want)
                .await?;
            page.entries.extend(more.entries);
            page.next_start_after = more.next_start_after;
            if page.entries.len() >= max_keys as usize || page.next_start_after.is_none() {
                return Ok(page);
            }
        }
    }

    /// One round of [`list`](Self::list): each member's page, merged. It is complete up
    /// to its `next_start_after`, which may come before `max_keys` keys: a member's
    /// answer is bounded in bytes, and the merge shows nothing past the first point
    /// where a member stopped ([`listing`](crate::listing)).
    async fn list_round(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, Error> {
        let request = Request::List {
            bucket: BucketName::new(bucket)?,
            prefix: prefix.to_owned(),
            start_after: start_after.map(str::to_owned),
            max_keys,
        };
        let mut pages = Vec::new();
        let mut last_error = None;
        // Every member at once: a round costs the slowest member's answer, not the sum.
        let answers = futures_util::future::join_all(
            self.inner
                .placement
                .members()
                .iter()
                .map(|member| self.call(member, &request)),
        )
        .await;
        for answer in answers {
            match answer {
                Ok(Response::Listing {
                    entries,
                    next_start_after,
                }) => pages.push(MemberPage {
                    entries,
                    next_start_after,
                }),
                Ok(Response::Error { kind, message }) => return Err(refused(kind, message)),
                Ok(other) => return Err(unexpected("list", &other)),
                Err(err) => last_error = Some(err),
            }
        }
        if pages.is_empty() {
            return Err(last_error
                .unwrap_or_else(|| Error::new(ErrorKind::Unavailable, "no member answered")));
        }
        Ok(merge(pages, max_keys as usize))
    }

    /// The cluster's members, as configured.
    pub fn members(&self) -> &[Member] {
        self.inner.placement.members()
    }

    /// One member's status, or why it did not answer.
    pub async fn status_of(&self, member: &Member) -> Result<NodeStatus, Error> {
        match self.call(member, &Request::Status).await? {
            Response::Status(status) => Ok(status),
            Response::Error { kind, message } => Err(refused(kind, message)),
            other => Err(unexpected("status", &other)),
        }
    }

    /// Every member's status, or why it did not answer.
    pub async fn status(&self) -> Vec<(Member, Result<NodeStatus, Error>)> {
        let mut out = Vec::new();
        for member in self.inner.placement.members() {
            out.push((member.clone(), self.status_of(member).await));
        }
        out
    }
}

/// An object's bytes arriving frame by frame ([`Client::read_stream`]). Each frame is
/// checked against its CRC as it arrives, and the whole object's CRC with the last.
pub struct ObjectStream {
    info: ObjectInfo,
    member: Member,
    recv: quinn::RecvStream,
    next: u64,
    frames: u64,
    whole: crc32fast::Hasher,
    timeout: Duration,
}

impl ObjectStream {
    /// What the answering replica said of the bytes: version, length and CRC32.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }

    /// The next frame's bytes; `None` once every frame has arrived and the whole
    /// object's CRC matched. After an error, the stream is over.
    pub async fn next_frame(&mut self) -> Option<Result<Bytes, Error>> {
        if self.next == self.frames {
            return None;
        }
        let index = self.next;
        // Whatever happens, no frame is tried after this one unless it arrives whole.
        self.next = self.frames;
        let frame = match self.receive_frame(index).await {
            Ok(frame) => frame,
            Err(err) => return Some(Err(err)),
        };
        self.next = index + 1;
        if self.next == self.frames && std::mem::take(&mut self.whole).finalize() != self.info.crc {
            return Some(Err(Error::new(
                ErrorKind::DataCorruption,
                format!("{} failed its whole-object CRC check", self.info.object.key),
            )));
        }
        Some(Ok(frame))
    }

    async fn receive_frame(&mut self, index: u64) -> Result<Bytes, Error> {
        let (member, info) = (&self.member, &self.info);
        let read = transport::read_frame_header(&mut self.recv, index, info.len, info.frame_bytes);
        let frame = transport::within(self.timeout, read)
            .await
            .map_err(|e| match e {
                TransportError::Truncated | TransportError::Read(_) => Error::new(
                    ErrorKind::DataCorruption,
                    format!(
                        "node {} ended {} mid-object at frame {index} (it found a corrupt chunk)",
                        member.id, info.object.key
                    ),
                ),
                other => transport_error(member, other),
            })?;
        let mut buf = vec![0; frame.len as usize];
        let data = transport::read_frame_data(&mut self.recv, &mut buf);
        transport::within(self.timeout, data)
            .await
            .map_err(|e| transport_error(member, e))?;
        let crc = crc32fast::hash(&buf);
        if crc != frame.crc {
            return Err(Error::new(
                ErrorKind::DataCorruption,
                format!("frame {index} of {} failed its CRC check", info.object.key),
            ));
        }
        self.whole.combine(&crc32fast::Hasher::new_with_initial_len(
            crc,
            buf.len() as u64,
        ));
        Ok(Bytes::from(buf))
    }
}

/// An object the caller holds in memory.
enum Held<'a> {
    /// Each frame is copied once, into the transport.
    Borrowed(&'a [u8]),
    /// Frames are sent by reference, without a copy.
    Shared(Bytes),
}

impl Held<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Held::Borrowed(data) => data,
            Held::Shared(data) => data,
        }
    }

    fn frame(&self, range: Range<usize>) -> Bytes {
        match self {
            Held::Borrowed(data) => Bytes::copy_from_slice(&data[range]),
            Held::Shared(data) => data.slice(range),
        }
    }
}

/// Where a put's frames come from: a buffer with precomputed CRCs, or a reader hashed
/// frame by frame.
enum FrameSource<'a, R> {
    Buffer { data: Held<'a>, crcs: Vec<u32> },
    Reader { reader: R, whole: crc32fast::Hasher },
}

impl<R: AsyncRead + Unpin> FrameSource<'_, R> {
    async fn frame(
        &mut self,
        index: u64,
        len: u64,
        frame_bytes: u32,
    ) -> Result<(Bytes, u32), Error> {
        let start = (index * u64::from(frame_bytes)) as usize;
        let size = (len - start as u64).min(u64::from(frame_bytes)) as usize;
        match self {
            FrameSource::Buffer { data, crcs } => {
                Ok((data.frame(start..start + size), crcs[index as usize]))
            }
            FrameSource::Reader { reader, whole } => {
                // A fresh buffer per frame: the transport keeps each one until the peer
                // has acknowledged its bytes.
                let mut buf = vec![0; size];
                reader.read_exact(&mut buf).await.map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("reading the object's bytes: {e}"),
                    )
                })?;
                let crc = crc32fast::hash(&buf);
                whole.combine(&crc32fast::Hasher::new_with_initial_len(crc, size as u64));
                Ok((Bytes::from(buf), crc))
            }
        }
    }
}
