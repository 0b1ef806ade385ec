//! Reads: get (whole or ranged), head, list and status, from local memory — a `get` of
//! an evicted object reads it back from the under-store first ([`read_through`]). A
//! client that gets `NotFound` or `Unavailable` here tries the next replica. Only `get`
//! writes to the stream itself (it streams frames); the others return their one
//! response.

use std::ops::Range;

use fdw_net::BucketName;
use fdw_net::transport::{self, TransportError};
use fdw_net::wire::{
    ByteRange, ErrorKind, ListEntry, NodeStatus, ObjectInfo, ObjectRef, Response, frame_crcs,
};

use super::{NodeShared, read_through, respond, store_error};
use crate::store::{ObjectMeta, ObjectState};

/// What a read sends of `meta`: the whole object, or `range` of it with its CRC.
fn info(node: &NodeShared, meta: &ObjectMeta, range: Option<(Range<u64>, u32)>) -> ObjectInfo {
    let (offset, len, crc) = match range {
        Some((range, crc)) => (range.start, range.end - range.start, crc),
        None => (0, meta.len, meta.crc),
    };
    ObjectInfo {
        object: ObjectRef {
            bucket: meta.id.bucket.clone(),
            key: meta.id.key.clone(),
        },
        version: meta.id.version,
        len,
        crc,
        object_len: meta.len,
        offset,
        frame_bytes: node.store.pool().chunk_size() as u32,
        write_type: meta.write_type,
        persisted: meta.state == ObjectState::Persisted,
        persist_failure: node.persister.failure(&meta.id),
        replicas: vec![node.me.id],
        metadata: (*meta.metadata).clone(),
        digest: meta.digest,
    }
}

/// Looks the key up in the under-store first if the client asks (no member knew it).
async fn discover(
    node: &NodeShared,
    object: &ObjectRef,
    under_store: bool,
) -> Result<(), read_through::ReadError> {
    if under_store {
        read_through::discover(node, &object.bucket, &object.key).await?;
    }
    Ok(())
}

pub(super) async fn get(
    node: &NodeShared,
    object: ObjectRef,
    range: Option<ByteRange>,
    under_store: bool,
    send: &mut quinn::SendStream,
) -> Result<(), TransportError> {
    let found = match discover(node, &object, under_store).await {
        Ok(()) => read_through::get(node, &object.bucket, &object.key).await,
        Err(err) => Err(err),
    };
    let reader = match found {
        Ok(reader) => reader,
        Err(err) => {
            respond(send, &or_lost(node, &object, err.into_response())).await;
            return Ok(());
        }
    };
    match range {
        None => {
            let meta = reader.meta().clone();
            transport::write_message(send, &Response::Object(info(node, &meta, None)).encode())
                .await?;
            // Stored chunks go out as they are, with their stored CRCs, each verified
            // first. A corrupt chunk ends the stream early: the client sees a truncated
            // object, never wrong bytes.
            for chunk in reader.verified_chunks() {
                match chunk {
                    Ok((bytes, crc)) => transport::write_frame(send, crc, bytes).await?,
                    Err(err) => {
                        tracing::error!("serving {}: {err}", meta.id);
                        let _ = send.reset(1u32.into());
                        return Ok(());
                    }
                }
            }
        }
        Some(asked) => {
            let len = reader.meta().len;
            let Some(range) = asked.resolve(len) else {
                let message = format!("{asked} names no byte of the object's {len} bytes");
                respond(
                    send,
                    &Response::error(ErrorKind::RangeNotSatisfiable, message),
                )
                .await;
                return Ok(());
            };
            let bytes = match reader.read_range(range.clone()) {
                Ok(bytes) => bytes,
                Err(err) => {
                    respond(send, &store_error(err)).await;
                    return Ok(());
                }
            };
            let frame_bytes = node.store.pool().chunk_size();
            let (crcs, crc) = frame_crcs(&bytes, frame_bytes);
            let response = Response::Object(info(node, reader.meta(), Some((range, crc))));
            transport::write_message(send, &response.encode()).await?;
            for (frame, crc) in bytes.chunks(frame_bytes).zip(crcs) {
                transport::write_frame(send, crc, frame).await?;
            }
        }
    }
    let _ = send.finish();
    Ok(())
}

pub(super) async fn head(node: &NodeShared, object: ObjectRef, under_store: bool) -> Response {
    if let Err(err) = discover(node, &object, under_store).await {
        return or_lost(node, &object, err.into_response());
    }
    match node.store.head(&object.bucket, &object.key) {
        Ok(meta) => Response::Object(info(node, &meta, None)),
        Err(err) => or_lost(node, &object, store_error(err)),
    }
}

/// A key this node does not hold, but witnessed as lost, is answered `Lost`.
fn or_lost(node: &NodeShared, object: &ObjectRef, response: Response) -> Response {
    let not_found = matches!(
        response,
        Response::Error {
            kind: ErrorKind::NotFound,
            ..
        }
    );
    match node.witnesses.lost(&object.bucket, &object.key) {
        Some((version, holders)) if not_found => Response::error(
            ErrorKind::Lost,
            format!(
                "{}/{}@{version} was acknowledged on nodes {holders:?}, and every one of them \
                 failed before it was persisted",
                object.bucket, object.key
            ),
        ),
        _ => response,
    }
}

pub(super) fn list(
    node: &NodeShared,
    bucket: BucketName,
    prefix: String,
    start_after: Option<String>,
    max_keys: u32,
) -> Response {
    // One more than the page, so the page knows whether keys remain.
    let listed = node.store.list_with_tombstones(
        &bucket,
        &prefix,
        start_after.as_deref(),
        max_keys as usize + 1,
    );
    let entries = listed.into_iter().map(|(meta, deleted)| ListEntry {
        key: meta.id.key,
        version: meta.id.version,
        len: meta.len,
        digest: meta.digest,
        deleted,
    });
    Response::listing(entries, max_keys)
}

pub(super) fn status(node: &NodeShared) -> Response {
    let stats = node.store.stats();
    let persist = node.persister.stats();
    Response::Status(NodeStatus {
        node: node.me.id,
        backing: stats.pool.backing.to_string(),
        frame_bytes: stats.pool.chunk_size_bytes as u32,
        pool_bytes: stats.pool.total_bytes(),
        pinned_bytes: stats.pinned_bytes,
        evictable_bytes: stats.evictable_bytes,
        backlog_objects: stats.backlog_objects as u64,
        backlog_bytes: stats.backlog_bytes,
        backlog_oldest_ms: stats
            .oldest_unpersisted_age
            .map_or(0, |age| age.as_millis() as u64),
        uploads_in_flight: persist.uploads_in_flight,
        uploads_done: persist.uploads_done,
        upload_failures: persist.upload_failures,
        last_upload_failure: persist.last_failure,
        members: node.membership.health(),
        incarnation: node.incarnation,
        recovery: node
            .recovery
            .status(node.membership.losses(), node.witnesses.lost_count()),
    })
}
