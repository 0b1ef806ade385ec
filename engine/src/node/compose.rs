//! Composing an object from stored parts: a multipart upload's completion. The parts
//! are placed with the object (staged keys, see `fdw_net::placement`), so every replica
//! concatenates its own copies and no part crosses the network again.
//!
//! The primary assigns the version and forwards the request to the other replicas, which
//! compose at once but commit only when the primary finishes the stream: if the
//! primary's own copy fails, it resets the streams and nothing is committed anywhere, as
//! with a put whose primary fails. Each copy is checked against the length and the CRC
//! the caller combined from the parts it checked, so a part replaced meanwhile, or
//! missing on a replica, fails that copy instead of storing other bytes. Each copy's
//! digest (its ETag) is S3's for a multipart upload: the MD5 of the parts' MD5s.

use std::sync::Arc;

use fdw_net::transport;
use fdw_net::wire::{ComposeHeader, Digest, ErrorKind, Forwarded, Request, Response};

use super::quorum::Outcome;
use super::write::{acknowledge, await_quorum, begin, check_storable, open_forwards};
use super::{NodeShared, error_kind, object_id, store_error};
use crate::store::{ObjectWriter, Role, StoreError};

pub(super) async fn compose(
    node: &Arc<NodeShared>,
    request: ComposeHeader,
    recv: &mut quinn::RecvStream,
) -> Response {
    match request.forwarded {
        Some(Forwarded { version, primary }) => {
            let role = Role::Replica { primary };
            let writer = match concatenate(node, &request, version, role).await {
                Ok(Some(writer)) => writer,
                Ok(None) => return stored(node, version, request.crc, None),
                Err(failure) => return failure,
            };
            // The primary's word: a finished stream commits, a reset abandons.
            if let Err(err) =
                transport::within(node.request_timeout, transport::read_end(recv)).await
            {
                let message = format!("{}: the primary gave the compose up: {err}", writer.id());
                return Response::error(ErrorKind::Unavailable, message);
            }
            commit(node, writer, &request, version)
        }
        None => coordinate(node, request).await,
    }
}

/// The primary's side.
async fn coordinate(node: &Arc<NodeShared>, request: ComposeHeader) -> Response {
    let (object, replication) = (&request.object, request.replication);
    if let Some(refused) = check_storable(node, object, replication) {
        return refused;
    }
    let (version, mut quorum, _writing) =
        match begin(node, object, replication, request.condition).await {
            Ok(begun) => begun,
            Err(refused) => return refused,
        };
    let forward = Request::Compose(ComposeHeader {
        forwarded: Some(Forwarded {
            version,
            primary: node.me.id,
        }),
        condition: None,
        ..request.clone()
    });
    let mut forwards =
        open_forwards(node, object, replication.replicas, &forward, &mut quorum).await;
    if quorum.outcome() == Outcome::Impossible {
        return Response::error(ErrorKind::Unavailable, quorum.failure_report());
    }
    let local = match concatenate(node, &request, version, Role::Primary).await {
        Ok(Some(writer)) => commit(node, writer, &request, version),
        Ok(None) => stored(node, version, request.crc, None),
        Err(failure) => failure,
    };
    let Response::Stored { digest, .. } = local else {
        for forward in &mut forwards {
            forward.abandon();
        }
        return local;
    };
    node.persister.wake();
    quorum.ack(node.me.id);
    await_quorum(node, forwards, &mut quorum).await;
    let written = (request.crc, digest);
    acknowledge(node, object, replication, version, written, &quorum).await
}

/// This node's copy of the parts, concatenated into an uncommitted writer; `None` if a
/// newer version of the key is already here (the compose is superseded on arrival).
async fn concatenate(
    node: &NodeShared,
    request: &ComposeHeader,
    version: fdw_net::Version,
    role: Role,
) -> Result<Option<ObjectWriter>, Response> {
    let object = &request.object;
    let id = object_id(&object.bucket, &object.key, version);
    let mut writer = match node
        .store
        .writer(id.clone(), request.replication.write_type)
    {
        Ok(writer) => writer,
        Err(StoreError::StaleVersion { .. }) => return Ok(None),
        Err(err) => return Err(store_error(err)),
    };
    writer.set_role(role);
    writer.set_replicas(request.replication.replicas);
    writer.set_metadata(request.metadata.clone());
    let mut digests = Vec::new();
    for key in request.parts.keys() {
        let failed = |kind: ErrorKind, why: String| {
            Response::error(kind, format!("{id}: part {key}: {why}; compose abandoned"))
        };
        let part = node
            .store
            .get(&object.bucket, &key)
            .map_err(|e| failed(error_kind(&e), e.to_string()))?;
        let len = writer.len() + part.meta().len;
        if len > request.len {
            let why = format!(
                "the parts come to more than the {} bytes asked",
                request.len
            );
            return Err(failed(ErrorKind::InvalidInput, why));
        }
        digests.push(part.meta().digest);
        for chunk in part.verified_chunks() {
            let (bytes, _) = chunk.map_err(|e| failed(error_kind(&e), e.to_string()))?;
            writer
                .write(bytes)
                .await
                .map_err(|e| failed(error_kind(&e), e.to_string()))?;
        }
    }
    if writer.len() != request.len {
        let message = format!(
            "{id}: the parts come to {} bytes, not the {} asked; compose abandoned",
            writer.len(),
            request.len
        );
        return Err(Response::error(ErrorKind::InvalidInput, message));
    }
    writer.set_digest(Digest::of_parts(digests));
    Ok(Some(writer))
}

/// Commits a copy whose bytes must have the CRC the caller combined from the parts.
fn commit(
    node: &NodeShared,
    writer: ObjectWriter,
    request: &ComposeHeader,
    version: fdw_net::Version,
) -> Response {
    let digest = writer.digest();
    match writer.commit_expecting(request.crc) {
        Ok(_) | Err(StoreError::StaleVersion { .. }) => {
            stored(node, version, request.crc, Some(digest))
        }
        Err(err) => store_error(err),
    }
}

fn stored(
    node: &NodeShared,
    version: fdw_net::Version,
    crc: u32,
    digest: Option<Digest>,
) -> Response {
    Response::Stored {
        version,
        crc,
        digest,
        replicas: vec![node.me.id],
    }
}
