//! The MD5 of a put's frames (its S3 ETag), computed beside the sending.

use bytes::Bytes;
use fdw_net::wire::{Digest, DigestHasher, ErrorKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Error;

/// Frames queued for the hashing thread: a bound on how far it may fall behind.
const QUEUED_FRAMES: usize = 4;

/// Hashes an object's frames as they are sent: inline for an object of one frame (a
/// thread hop costs more than hashing 4 KiB), else on a blocking thread fed each frame
/// by reference, so MD5 (about 480 MiB/s a core) runs beside the network instead of
/// between frames.
pub(crate) enum FrameHasher {
    /// The caller gave the digest: nothing is hashed.
    Given(Digest),
    Inline(DigestHasher),
    Threaded {
        frames: mpsc::Sender<Bytes>,
        done: JoinHandle<Digest>,
    },
}

impl FrameHasher {
    pub(crate) fn new(given: Option<Digest>, frames: u64) -> Self {
        match given {
            Some(digest) => Self::Given(digest),
            None if frames <= 1 => Self::Inline(DigestHasher::new()),
            None => {
                let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUED_FRAMES);
                let done = tokio::task::spawn_blocking(move || {
                    let mut md5 = DigestHasher::new();
                    while let Some(frame) = rx.blocking_recv() {
                        md5.update(&frame);
                    }
                    md5.finish()
                });
                Self::Threaded { frames: tx, done }
            }
        }
    }

    /// Hashes `frame` next (by reference: the bytes are not copied).
    pub(crate) async fn update(&mut self, frame: &Bytes) {
        match self {
            Self::Given(_) => {}
            Self::Inline(md5) => md5.update(frame),
            // A closed channel means the thread is gone: `finish` says so.
            Self::Threaded { frames, .. } => {
                let _ = frames.send(frame.clone()).await;
            }
        }
    }

    /// The digest of every frame hashed.
    pub(crate) async fn finish(self) -> Result<Digest, Error> {
        match self {
            Self::Given(digest) => Ok(digest),
            Self::Inline(md5) => Ok(md5.finish()),
            Self::Threaded { frames, done } => {
                drop(frames);
                done.await.map_err(|e| {
                    Error::new(ErrorKind::Internal, format!("hashing the object: {e}"))
                })
            }
        }
    }
}
