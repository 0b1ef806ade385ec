//! Request bodies checked before they can be committed.
//!
//! A put is committed when its last frame reaches the primary. So the body's last chunk
//! is held back until the body has ended and proved whole: its length as declared, and
//! every checksum the client sent (`Content-MD5`, `x-amz-checksum-*` in a header or in the
//! trailer of an `aws-chunked` body) matching the bytes. A body that fails ends the stream with an
//! error instead of its last chunk, the put is abandoned uncommitted, and the client
//! gets the S3 error that says why (`BadDigest`, `IncompleteBody`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use bytes::Bytes;
use futures_util::Stream;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::{Checksum, ChecksumAlgorithm, StreamingBlob};
use s3s::{S3Error, S3ErrorCode, TrailingHeaders};

/// What the client said its body would be.
pub(super) struct Declared {
    /// `Content-Length` (decoded, for `aws-chunked`), if sent.
    pub len: Option<u64>,
    /// The checksums in its headers.
    pub checksums: Checksum,
    /// `Content-MD5`: the body's MD5, base64.
    pub md5: Option<String>,
    /// The algorithm of a checksum it sends in the trailer.
    pub algorithm: Option<ChecksumAlgorithm>,
    /// The trailer, readable once the body has ended.
    pub trailers: Option<TrailingHeaders>,
}

/// What a `PutObjectInput` or `UploadPartInput` declares of its body, moved out of it.
macro_rules! declared {
    ($input:ident, $headers:expr, $trailers:expr) => {
        $crate::gateway::checked_body::Declared {
            len: $input
                .content_length
                .map(|l| l.max(0) as u64)
                .or_else(|| $crate::gateway::checked_body::decoded_length($headers)),
            checksums: s3s::dto::Checksum {
                checksum_crc32: $input.checksum_crc32,
                checksum_crc32c: $input.checksum_crc32c,
                checksum_sha1: $input.checksum_sha1,
                checksum_sha256: $input.checksum_sha256,
                checksum_crc64nvme: $input.checksum_crc64nvme,
                ..s3s::dto::Checksum::default()
            },
            md5: $input.content_md5,
            algorithm: $input.checksum_algorithm,
            trailers: $trailers,
        }
    };
}
pub(super) use declared;

/// `x-amz-decoded-content-length`: the length of an `aws-chunked` body sent with
/// `Transfer-Encoding: chunked` and no `Content-Length`, as the AWS C++ SDK (pyarrow)
/// sends parts.
pub(super) fn decoded_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get("x-amz-decoded-content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Why a body was refused, for the handler to answer once the put has failed.
#[derive(Clone, Default)]
pub(super) struct Refusal(Arc<Mutex<Option<S3Error>>>);

impl Refusal {
    fn set(&self, err: S3Error) -> io::Error {
        let message = err.message().unwrap_or("request body refused").to_owned();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
        io::Error::new(io::ErrorKind::InvalidData, message)
    }

    /// The refusal, if the body was refused.
    pub(super) fn take(&self) -> Option<S3Error> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The body as a stream of chunks that ends in an error unless it proves whole.
pub(super) struct CheckedBody {
    inner: StreamingBlob,
    declared: Declared,
    hasher: Option<ChecksumHasher>,
    md5: Option<Md5>,
    held: Option<Bytes>,
    seen: u64,
    ended: bool,
    refusal: Refusal,
}

impl CheckedBody {
    pub(super) fn new(inner: StreamingBlob, declared: Declared, refusal: Refusal) -> Self {
        let mut hasher = ChecksumHasher::default();
        let sent = &declared.checksums;
        let wants = |header: &Option<String>, name: &str| {
            header.is_some()
                || declared
                    .algorithm
                    .as_ref()
                    .is_some_and(|a| a.as_str() == name)
        };
        if wants(&sent.checksum_crc32, ChecksumAlgorithm::CRC32) {
            hasher.crc32 = Some(Default::default());
        }
        if wants(&sent.checksum_crc32c, ChecksumAlgorithm::CRC32C) {
            hasher.crc32c = Some(Default::default());
        }
        if wants(&sent.checksum_sha1, ChecksumAlgorithm::SHA1) {
            hasher.sha1 = Some(Default::default());
        }
        if wants(&sent.checksum_sha256, ChecksumAlgorithm::SHA256) {
            hasher.sha256 = Some(Default::default());
        }
        if wants(&sent.checksum_crc64nvme, ChecksumAlgorithm::CRC64NVME) {
            hasher.crc64nvme = Some(Default::default());
        }
        Self {
            inner,
            md5: declared.md5.as_ref().map(|_| Md5::default()),
            declared,
            hasher: Some(hasher),
            held: None,
            seen: 0,
            ended: false,
            refusal,
        }
    }

    /// Ends the stream with `err` in place of the chunk held back.
    fn refuse(&mut self, err: S3Error) -> Poll<Option<io::Result<Bytes>>> {
        self.ended = true;
        self.held = None;
        Poll::Ready(Some(Err(self.refusal.set(err))))
    }

    /// Checks the whole body once it has ended; `Err` says why it is refused.
    fn verdict(&mut self) -> Result<(), S3Error> {
        if let Some(len) = self.declared.len
            && len != self.seen
        {
            return Err(S3Error::with_message(
                S3ErrorCode::IncompleteBody,
                format!(
                    "the body was {} bytes, not the {len} its length declared",
                    self.seen
                ),
            ));
        }
        if let (Some(expected), Some(md5)) = (&self.declared.md5, self.md5.take()) {
            let actual = BASE64_STANDARD.encode(md5.finalize());
            if *expected != actual {
                // As S3: a value that is no MD5 at all is InvalidDigest.
                let code = match BASE64_STANDARD.decode(expected) {
                    Ok(bytes) if bytes.len() == 16 => S3ErrorCode::BadDigest,
                    _ => S3ErrorCode::InvalidDigest,
                };
                return Err(S3Error::with_message(
                    code,
                    format!(
                        "the Content-MD5 you specified ({expected}) did not match the body's ({actual})"
                    ),
                ));
            }
        }
        let mut expected = std::mem::take(&mut self.declared.checksums);
        if let Some(trailers) = self.declared.trailers.as_ref().and_then(|t| t.take()) {
            let value = |name: &str| {
                trailers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            expected.checksum_crc32 = expected
                .checksum_crc32
                .or_else(|| value("x-amz-checksum-crc32"));
            expected.checksum_crc32c = expected
                .checksum_crc32c
                .or_else(|| value("x-amz-checksum-crc32c"));
            expected.checksum_sha1 = expected
                .checksum_sha1
                .or_else(|| value("x-amz-checksum-sha1"));
            expected.checksum_sha256 = expected
                .checksum_sha256
                .or_else(|| value("x-amz-checksum-sha256"));
            expected.checksum_crc64nvme = expected
                .checksum_crc64nvme
                .or_else(|| value("x-amz-checksum-crc64nvme"));
        }
        let actual = self.hasher.take().unwrap_or_default().finalize();
        let pairs = [
            ("CRC32", &expected.checksum_crc32, &actual.checksum_crc32),
            ("CRC32C", &expected.checksum_crc32c, &actual.checksum_crc32c),
            ("SHA1", &expected.checksum_sha1, &actual.checksum_sha1),
            ("SHA256", &expected.checksum_sha256, &actual.checksum_sha256),
            (
                "CRC64NVME",
                &expected.checksum_crc64nvme,
                &actual.checksum_crc64nvme,
            ),
        ];
        for (name, expected, actual) in pairs {
            if let Some(expected) = expected
                && Some(expected) != actual.as_ref()
            {
                return Err(S3Error::with_message(
                    S3ErrorCode::BadDigest,
                    format!(
                        "the {name} you specified ({expected}) did not match the body's ({})",
                        actual.as_deref().unwrap_or("not computed")
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Stream for CheckedBody {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(this.held.take().map(Ok));
        }
        loop {
            match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    this.seen += chunk.len() as u64;
                    if let Some(len) = this.declared.len.filter(|&len| this.seen > len) {
                        // Refuse at once: the rest of the body is never read or held.
                        return this.refuse(S3Error::with_message(
                            S3ErrorCode::IncompleteBody,
                            format!("the body is longer than the {len} bytes its length declared"),
                        ));
                    }
                    if let Some(hasher) = &mut this.hasher {
                        hasher.update(&chunk);
                    }
                    if let Some(md5) = &mut this.md5 {
                        md5.update(&chunk);
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Some(Err(err)) => {
                    return this.refuse(S3Error::with_message(
                        S3ErrorCode::IncompleteBody,
                        format!("reading the request body: {err}"),
                    ));
                }
                None => {
                    if let Err(err) = this.verdict() {
                        return this.refuse(err);
                    }
                    this.ended = true;
                    return Poll::Ready(this.held.take().map(Ok));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn body(chunks: &[&'static [u8]]) -> StreamingBlob {
        let chunks: Vec<Result<Bytes, io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        StreamingBlob::wrap(futures_util::stream::iter(chunks))
    }

    fn declared(len: u64, crc32: Option<&str>) -> Declared {
        Declared {
            len: Some(len),
            checksums: Checksum {
                checksum_crc32: crc32.map(str::to_owned),
                ..Checksum::default()
            },
            md5: None,
            algorithm: None,
            trailers: None,
        }
    }

    async fn run(
        chunks: &[&'static [u8]],
        declared: Declared,
    ) -> (Vec<io::Result<Bytes>>, Refusal) {
        let refusal = Refusal::default();
        let out = CheckedBody::new(body(chunks), declared, refusal.clone())
            .collect()
            .await;
        (out, refusal)
    }

    #[tokio::test]
    async fn a_whole_body_passes_every_chunk() {
        // "DUoRhQ==" is S3's documented CRC32 of "hello world".
        let (out, refusal) = run(&[b"hello ", b"", b"world"], declared(11, Some("DUoRhQ=="))).await;
        let bytes: Vec<u8> = out
            .into_iter()
            .flat_map(|c| c.expect("passes").to_vec())
            .collect();
        assert_eq!(bytes, b"hello world");
        assert!(refusal.take().is_none());
    }

    #[tokio::test]
    async fn a_wrong_checksum_withholds_the_last_chunk() {
        let (out, refusal) = run(&[b"hello ", b"world"], declared(11, Some("AAAAAA=="))).await;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].as_ref().expect("first chunk"),
            &Bytes::from_static(b"hello ")
        );
        assert!(
            out[1].is_err(),
            "the last chunk is an error, never the bytes"
        );
        assert_eq!(
            refusal.take().expect("refused").code(),
            &S3ErrorCode::BadDigest
        );
    }

    #[tokio::test]
    async fn content_md5_is_checked() {
        // The MD5 of "hello world", base64.
        let good = "XrY7u+Ae7tCTyyK7j1rNww==";
        for (md5, refused) in [
            (good, None),
            ("AAAAAAAAAAAAAAAAAAAAAA==", Some(S3ErrorCode::BadDigest)),
            ("not-an-md5", Some(S3ErrorCode::InvalidDigest)),
        ] {
            let mut declared = declared(11, None);
            declared.md5 = Some(md5.to_owned());
            let (out, refusal) = run(&[b"hello ", b"world"], declared).await;
            assert_eq!(out.last().expect("an item").is_err(), refused.is_some());
            assert_eq!(refusal.take().map(|r| r.code().clone()), refused, "{md5}");
        }
    }

    #[tokio::test]
    async fn a_short_or_long_body_is_incomplete() {
        for len in [10, 12] {
            let (out, refusal) = run(&[b"hello ", b"world"], declared(len, None)).await;
            assert!(out.last().expect("an item").is_err(), "{len}");
            assert_eq!(
                refusal.take().expect("refused").code(),
                &S3ErrorCode::IncompleteBody
            );
        }
    }
}
