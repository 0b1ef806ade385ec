//! Objects read from the cluster, handed on frame by frame: to an HTTP response body, or
//! into another put. Memory use is a few frames, whatever the object's size, and the
//! first byte leaves as soon as the first frame arrives.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use fdw_client::ObjectStream;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use s3s::dto::StreamingBlob;

/// Frames in flight between the cluster and a slow HTTP client.
const BUFFERED_FRAMES: usize = 4;

/// The object's frames as a stream; an error (a failed CRC, a replica gone) ends it.
pub(super) fn frames(stream: ObjectStream) -> BoxStream<'static, io::Result<Bytes>> {
    futures_util::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        match stream.next_frame().await? {
            Ok(frame) => Some((Ok(frame), Some(stream))),
            Err(err) => Some((Err(io::Error::other(err)), None)),
        }
    })
    .boxed()
}

/// The object as a response body. A task reads its frames ahead of the HTTP client; if
/// the object fails mid-way, the body ends in an error, the connection is cut, and the
/// client sees a short body rather than a wrong one.
pub(super) fn response_body(stream: ObjectStream) -> StreamingBlob {
    let (tx, rx) = tokio::sync::mpsc::channel(BUFFERED_FRAMES);
    tokio::spawn(async move {
        let mut frames = frames(stream);
        while let Some(frame) = frames.next().await {
            let failed = frame.is_err();
            // The client went away: stop reading from the cluster.
            if tx.send(frame).await.is_err() || failed {
                break;
            }
        }
    });
    StreamingBlob::wrap(Body(rx))
}

struct Body(tokio::sync::mpsc::Receiver<io::Result<Bytes>>);

impl Stream for Body {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
