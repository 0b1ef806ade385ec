//! Puts and deletes: as primary (assign the version, fan out, count the quorum, tell
//! the witnesses) and as replica (store what the primary forwards).

use std::sync::Arc;

use fdw_net::Version;
use fdw_net::placement::Member;
use fdw_net::transport::{self, TransportError};
use fdw_net::wire::{
    Digest, ErrorKind, Forwarded, ObjectRef, PutHeader, Replication, Request, Response,
    WriteCondition, combined_crc, frame_count,
};
use fdw_persist::UnderStore;
use tokio::sync::mpsc;

use super::keys_in_flight::{Refused, Writing};
use super::quorum::{Outcome, Quorum};
use super::witness::WITNESSES;
use super::{NodeShared, object_id, store_error};
use crate::store::{Role, StoreError};

/// A replica the primary forwards to: the stream carrying this write to it.
pub(super) struct Forward {
    member: u16,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Forward {
    /// Tells the replica the write is given up: it commits nothing.
    pub(super) fn abandon(&mut self) {
        let _ = self.send.reset(1u32.into());
    }
}

/// Opens the write to the other R − 1 replicas: the members after this one in the
/// object's preference list, skipping those that do not answer (hand-off: the list goes
/// on past R). `request` is sent as each stream's header.
pub(super) async fn open_forwards(
    node: &NodeShared,
    object: &ObjectRef,
    replicas: u8,
    request: &Request,
    quorum: &mut Quorum,
) -> Vec<Forward> {
    let wanted = usize::from(replicas) - 1;
    let header = request.encode();
    let mut forwards = Vec::with_capacity(wanted);
    let mut skipped = Vec::new();
    for member in node.placement.preference_list(&object.bucket, &object.key) {
        if forwards.len() == wanted {
            break;
        }
        if member.id == node.me.id {
            continue;
        }
        // A member declared dead is skipped at once, not after a connect timeout.
        if let Some(silent) = node.membership.dead_for(member.id) {
            skipped.push((
                member.id,
                format!("declared dead: no heartbeat answered for {silent:.1?}"),
            ));
            continue;
        }
        let opened = async {
            let connection = node.peers.connection(member).await?;
            let (mut send, recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
            transport::write_message(&mut send, &header)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(Forward {
                member: member.id,
                send,
                recv,
            })
        };
        match opened.await {
            Ok(forward) => forwards.push(forward),
            Err(reason) => {
                tracing::debug!(peer = member.id, "skipping replica: {reason}");
                skipped.push((member.id, reason));
            }
        }
    }
    // Every replica slot left empty is a failure, explained by the members tried.
    let mut skipped = skipped.into_iter();
    for _ in forwards.len()..wanted {
        quorum.fail(match skipped.next() {
            Some((id, why)) => format!("node {id}: {why}"),
            None => "no further member to hand off to".to_owned(),
        });
    }
    forwards
}

/// Collects the forwards' responses into `quorum` until it is decided or the request
/// timeout passes.
pub(super) async fn await_quorum(
    node: &NodeShared,
    mut forwards: Vec<Forward>,
    quorum: &mut Quorum,
) {
    // One replica left to hear from (R=2): wait for it in this task, sparing a task
    // hop and a channel on the small-object path.
    if quorum.outcome() == Outcome::Pending
        && forwards.len() == 1
        && let Some(forward) = forwards.pop()
    {
        let (member, reply) = acknowledgement(forward, node.request_timeout).await;
        match reply {
            Ok(()) => quorum.ack(member),
            Err(reason) => quorum.fail(format!("node {member}: {reason}")),
        }
        return;
    }
    let (tx, mut rx) = mpsc::channel(forwards.len().max(1));
    let pending = forwards.len();
    for forward in forwards {
        let tx = tx.clone();
        let timeout = node.request_timeout;
        tokio::spawn(async move {
            let _ = tx.send(acknowledgement(forward, timeout).await).await;
        });
    }
    drop(tx);
    for _ in 0..pending {
        if quorum.outcome() != Outcome::Pending {
            break;
        }
        match rx.recv().await {
            Some((member, Ok(()))) => quorum.ack(member),
            Some((member, Err(reason))) => quorum.fail(format!("node {member}: {reason}")),
            None => break,
        }
    }
}

/// Ends the write to one replica and reads its answer.
async fn acknowledgement(
    mut forward: Forward,
    timeout: std::time::Duration,
) -> (u16, Result<(), String>) {
    let _ = forward.send.finish();
    let reply =
        match tokio::time::timeout(timeout, transport::read_response(&mut forward.recv)).await {
            Ok(Ok(Response::Stored { .. })) => Ok(()),
            Ok(Ok(Response::Error { kind, message })) => Err(format!("{kind:?}: {message}")),
            Ok(Ok(other)) => Err(format!("unexpected reply {other:?}")),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no acknowledgement within {timeout:?}")),
        };
    (forward.member, reply)
}

/// What the writer hears once the primary's copy and the replicas' answers are counted:
/// the quorum's outcome. For an acknowledged version of a write type that persists, the
/// witnesses are told, and a write type that acknowledges after persisting waits for the
/// under-store here. `written` is the CRC and digest of the primary's copy.
pub(super) async fn acknowledge(
    node: &Arc<NodeShared>,
    object: &ObjectRef,
    replication: Replication,
    version: Version,
    (crc, digest): (u32, Option<Digest>),
    quorum: &Quorum,
) -> Response {
    let response = decided(quorum, version, crc, digest);
    if !matches!(response, Response::Stored { .. }) {
        return response;
    }
    if replication.write_type.persists() {
        tell_witnesses(node, object, version, quorum.acked());
    }
    if replication.write_type.acks_after_persist() {
        let id = object_id(&object.bucket, &object.key, version);
        if let Err(why) = node.persister.wait_persisted(&node.store, &id).await {
            let message = format!(
                "{id} is in memory on {} replicas but the under-store does not have it \
                 yet ({why}); it keeps being uploaded",
                quorum.acked().len()
            );
            return Response::error(ErrorKind::Unavailable, message);
        }
    }
    response
}

fn decided(quorum: &Quorum, version: Version, crc: u32, digest: Option<Digest>) -> Response {
    match quorum.outcome() {
        Outcome::Reached => Response::Stored {
            version,
            crc,
            digest,
            replicas: quorum.acked().to_vec(),
        },
        Outcome::Impossible | Outcome::Pending => {
            Response::error(ErrorKind::Unavailable, quorum.failure_report())
        }
    }
}

pub(super) async fn put(
    node: &Arc<NodeShared>,
    header: PutHeader,
    recv: &mut quinn::RecvStream,
) -> Response {
    let chunk = node.store.pool().chunk_size();
    if header.frame_bytes as usize != chunk {
        return Response::error(
            ErrorKind::InvalidInput,
            format!(
                "frame size {} does not match the cluster's chunk size {chunk}",
                header.frame_bytes
            ),
        );
    }
    match header.forwarded {
        Some(Forwarded { version, primary }) => {
            let role = Role::Replica { primary };
            receive(node, &header, version, role, recv, &mut Vec::new(), None).await
        }
        None => coordinate_put(node, header, recv).await,
    }
}

/// A primary's start of a write to `object`: the version it assigns (above every
/// version the key has here), the quorum it will count, and the write's place among
/// the key's writes in progress, held until it is answered. A conditional write is
/// checked here, before anything is stored or forwarded ([`keys_in_flight`]); for a
/// key this node does not know, the under-store is asked first, so a key persisted
/// before a restart still exists.
pub(super) async fn begin<'a>(
    node: &'a NodeShared,
    object: &ObjectRef,
    replication: Replication,
    condition: Option<WriteCondition>,
) -> Result<(Version, Quorum, Writing<'a>), Response> {
    let (bucket, key) = (&object.bucket, &object.key);
    if condition.is_some()
        && let Err(err) = super::read_through::discover(node, bucket, key).await
    {
        return Err(err.into_response());
    }
    let live = || node.store.head(bucket, key).ok().map(|meta| meta.digest);
    let writing = node
        .keys_in_flight
        .start(bucket, key, condition, live)
        .map_err(|refused| match refused {
            Refused::Conflict => Response::error(
                ErrorKind::Conflict,
                format!("{bucket}/{key}: another write of the key is in progress; try again"),
            ),
            Refused::Failed(None) if condition.is_some_and(WriteCondition::needs_the_key) => {
                Response::error(
                    ErrorKind::NotFound,
                    format!("{bucket}/{key}: no such key, as the condition {condition:?} needs"),
                )
            }
            Refused::Failed(live) => Response::error(
                ErrorKind::PreconditionFailed,
                format!(
                    "{bucket}/{key}: the condition {condition:?} does not hold (live version: {})",
                    live.map_or_else(|| "none".to_owned(), |d| format!("ETag {d}"))
                ),
            ),
        })?;
    let newest = node.store.newest_version(bucket, key);
    let quorum = Quorum::new(replication.replicas.into(), replication.quorum.into());
    Ok((node.versions.next(newest), quorum, writing))
}

/// The refusal of a write of a key its bucket's under-store cannot hold (a local directory
/// cannot make `a/../b` a file of its own; S3 counts the store's prefix in its key
/// limit), before anything is stored: such a write could be acknowledged but never
/// persisted.
pub(super) fn check_storable(
    node: &NodeShared,
    object: &ObjectRef,
    replication: Replication,
) -> Option<Response> {
    let (bucket, key) = (&object.bucket, &object.key);
    if !replication.write_type.persists() {
        return None;
    }
    let (store, path) = node.persister.location_of(bucket, key)?;
    let reason = store.refuses_key(&path)?;
    Some(Response::error(
        ErrorKind::InvalidInput,
        format!("{bucket}/{key}: the bucket's under-store cannot hold the key: {reason}"),
    ))
}

/// The primary's side of a put.
async fn coordinate_put(
    node: &Arc<NodeShared>,
    header: PutHeader,
    recv: &mut quinn::RecvStream,
) -> Response {
    let replication = header.replication;
    if let Some(refused) = check_storable(node, &header.object, replication) {
        return refused;
    }
    let (version, mut quorum, _writing) =
        match begin(node, &header.object, replication, header.condition).await {
            Ok(begun) => begun,
            Err(refused) => return refused,
        };
    let forward = Request::Put(PutHeader {
        forwarded: Some(Forwarded {
            version,
            primary: node.me.id,
        }),
        condition: None,
        ..header.clone()
    });
    let mut forwards = open_forwards(
        node,
        &header.object,
        replication.replicas,
        &forward,
        &mut quorum,
    )
    .await;
    if quorum.outcome() == Outcome::Impossible {
        return Response::error(ErrorKind::Unavailable, quorum.failure_report());
    }
    match receive(
        node,
        &header,
        version,
        Role::Primary,
        recv,
        &mut forwards,
        Some(&mut quorum),
    )
    .await
    {
        Response::Stored { crc, digest, .. } => {
            quorum.ack(node.me.id);
            await_quorum(node, forwards, &mut quorum).await;
            let written = (crc, digest);
            acknowledge(node, &header.object, replication, version, written, &quorum).await
        }
        failure => {
            for forward in &mut forwards {
                forward.abandon();
            }
            failure
        }
    }
}

/// Tells the first [`WITNESSES`] members of the preference list that do not hold the
/// acknowledged version which members do, in the background (not on the write's path).
fn tell_witnesses(node: &Arc<NodeShared>, object: &ObjectRef, version: Version, holders: &[u16]) {
    let witnesses: Vec<Member> = node
        .placement
        .preference_list(&object.bucket, &object.key)
        .into_iter()
        .filter(|m| !holders.contains(&m.id))
        .take(WITNESSES)
        .cloned()
        .collect();
    if witnesses.is_empty() {
        return;
    }
    let request = Request::Witness {
        object: object.clone(),
        version,
        holders: holders.to_vec(),
    }
    .encode();
    let node = node.clone();
    tokio::spawn(async move {
        for member in witnesses {
            if let Err(err) = node.ask(&member, &request).await {
                tracing::debug!(peer = member.id, %version, "witness not told: {err}");
            }
        }
    });
}

/// A newer version of the key is already here: this one is superseded on arrival, which
/// is success (it was ordered first and overwritten), with no copy kept. `crc` is that
/// of the bytes received, so a client that streamed them can check its receipt. No
/// digest: none is stored.
fn superseded(version: Version, crc: u32) -> Response {
    Response::Stored {
        version,
        crc,
        digest: None,
        replicas: vec![],
    }
}

/// Receives an object's frames into a writer, checking each frame's CRC and forwarding
/// it to `forwards` as it arrives, then the trailer with its digest, and commits it
/// under `version`. The primary (the one counting a quorum) persists; replicas wait for
/// its word.
async fn receive(
    node: &NodeShared,
    header: &PutHeader,
    version: Version,
    role: Role,
    recv: &mut quinn::RecvStream,
    forwards: &mut Vec<Forward>,
    mut quorum: Option<&mut Quorum>,
) -> Response {
    let id = object_id(&header.object.bucket, &header.object.key, version);
    // Superseded on arrival (a newer version is here): the frames are still read,
    // checked and passed on, so the sender's stream ends as it should and its receipt
    // carries the CRC of the bytes it sent; nothing is stored.
    let mut writer = match node.store.writer(id.clone(), header.replication.write_type) {
        Ok(mut writer) => {
            writer.set_role(role);
            writer.set_replicas(header.replication.replicas);
            writer.set_metadata(header.metadata.clone());
            Some(writer)
        }
        Err(StoreError::StaleVersion { .. }) => None,
        Err(err) => return store_error(err),
    };
    let mut passed = Vec::new();
    // A peer error ends the write: stalling is `Unavailable` (try again), anything
    // else the peer sent wrong is `InvalidInput`.
    let peer_error = |at: String, err: TransportError| {
        let kind = match err {
            TransportError::Stalled(_) => ErrorKind::Unavailable,
            _ => ErrorKind::InvalidInput,
        };
        Response::error(kind, format!("{id}: {at}: {err}; write abandoned"))
    };
    let limit = node.request_timeout;
    // The frame as quinn received it: copied once into the pool, and forwarded to the
    // replicas by reference (no second copy).
    let mut pieces = Vec::new();
    for index in 0..frame_count(header.len, header.frame_bytes) {
        let read = transport::read_frame_header(recv, index, header.len, header.frame_bytes);
        let frame = match transport::within(limit, read).await {
            Ok(frame) => frame,
            Err(err) => return peer_error(format!("frame {index}"), err),
        };
        let len = frame.len as usize;
        // Memory first, then the bytes: a full pool holds the sender back.
        let buf = match writer.as_mut().map(|w| w.buffer(len)) {
            Some(buffer) => match buffer.await {
                Ok(buf) => Some(buf),
                Err(err) => return store_error(err),
            },
            None => None,
        };
        pieces.clear();
        let read = transport::read_frame_bytes(recv, len, &mut pieces);
        if let Err(err) = transport::within(limit, read).await {
            return peer_error(format!("frame {index}"), err);
        }
        match buf {
            Some(buf) => {
                let mut at = 0;
                for piece in &pieces {
                    buf[at..at + piece.len()].copy_from_slice(piece);
                    at += piece.len();
                }
            }
            None => {
                let mut crc = crc32fast::Hasher::new();
                pieces.iter().for_each(|piece| crc.update(piece));
                if crc.finalize() != frame.crc {
                    let message = format!("{id}: frame {index} does not match its CRC");
                    return Response::error(ErrorKind::DataCorruption, message);
                }
                passed.push((frame.crc, len as u64));
            }
        }
        if let Some(writer) = writer.as_mut() {
            writer.advance(len);
            if let Err(err) = writer.seal_frame(frame.crc) {
                return store_error(err);
            }
        }
        let mut failed = Vec::new();
        for (i, forward) in forwards.iter_mut().enumerate() {
            if let Err(err) =
                transport::write_frame_bytes(&mut forward.send, frame.crc, &pieces).await
            {
                failed.push((i, err.to_string()));
            }
        }
        drop_failed(forwards, failed, quorum.as_deref_mut());
    }
    let digest = match transport::within(limit, transport::read_trailer(recv)).await {
        Ok(digest) => digest,
        Err(err) => return peer_error("the trailer".to_owned(), err),
    };
    let mut failed = Vec::new();
    for (i, forward) in forwards.iter_mut().enumerate() {
        if let Err(err) = transport::write_trailer(&mut forward.send, &digest).await {
            failed.push((i, err.to_string()));
        }
    }
    drop_failed(forwards, failed, quorum);
    let Some(mut writer) = writer else {
        return superseded(version, combined_crc(passed));
    };
    writer.set_digest(digest);
    let received = writer.crc();
    let committed = match header.crc {
        Some(expected) => writer.commit_expecting(expected),
        None => writer.commit(),
    };
    match committed {
        Ok(meta) => {
            if role == Role::Primary {
                node.persister.wake();
            }
            Response::Stored {
                version,
                crc: meta.crc,
                digest: Some(meta.digest),
                replicas: vec![node.me.id],
            }
        }
        Err(StoreError::StaleVersion { .. }) => superseded(version, received),
        Err(err) => store_error(err),
    }
}

/// Drops the forwards whose streams failed (`(index, why)`, ascending), each a failure
/// in the quorum.
fn drop_failed(
    forwards: &mut Vec<Forward>,
    failed: Vec<(usize, String)>,
    mut quorum: Option<&mut Quorum>,
) {
    for (i, reason) in failed.into_iter().rev() {
        let forward = forwards.remove(i);
        if let Some(quorum) = quorum.as_deref_mut() {
            quorum.fail(format!("node {}: {reason}", forward.member));
        }
    }
}

pub(super) async fn delete(
    node: &NodeShared,
    object: ObjectRef,
    replication: Replication,
    forwarded: Option<Forwarded>,
) -> Response {
    let local = |version, role| match node.store.delete(
        object_id(&object.bucket, &object.key, version),
        replication.write_type,
        role,
        replication.replicas,
    ) {
        Ok(()) | Err(StoreError::StaleVersion { .. }) => Ok(()),
        Err(err) => Err(err),
    };
    match forwarded {
        Some(Forwarded { version, primary }) => match local(version, Role::Replica { primary }) {
            Ok(()) => Response::Stored {
                version,
                crc: 0,
                digest: None,
                replicas: vec![node.me.id],
            },
            Err(err) => store_error(err),
        },
        None => {
            let (version, mut quorum, _writing) =
                match begin(node, &object, replication, None).await {
                    Ok(begun) => begun,
                    Err(refused) => return refused,
                };
            let forward = Request::Delete {
                object: object.clone(),
                replication,
                forwarded: Some(Forwarded {
                    version,
                    primary: node.me.id,
                }),
            };
            let forwards =
                open_forwards(node, &object, replication.replicas, &forward, &mut quorum).await;
            match local(version, Role::Primary) {
                Ok(()) => {
                    node.persister.wake();
                    quorum.ack(node.me.id)
                }
                Err(err) => quorum.fail(format!("node {}: {err}", node.me.id)),
            }
            await_quorum(node, forwards, &mut quorum).await;
            decided(&quorum, version, 0, None)
        }
    }
}
