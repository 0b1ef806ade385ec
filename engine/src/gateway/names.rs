//! fdw's facts of an object as S3 clients expect to see them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fdw_client::{Error, ErrorKind};
use fdw_net::Version;
use fdw_net::wire::Digest;
use s3s::dto::{ETag, Timestamp};
use s3s::{S3Error, S3ErrorCode};

/// The ETag of an object: S3's, from its digest (the MD5 of its bytes, or of its
/// parts' MD5s with their count), so tools that check ETags against the bytes (s3cmd,
/// rclone, `aws s3 sync`) find them equal.
pub(super) fn etag(digest: Digest) -> ETag {
    ETag::Strong(digest.etag())
}

/// The digest an ETag names, if it is one of [`etag`]'s form.
pub(super) fn digest_of(tag: &ETag) -> Option<Digest> {
    Digest::from_etag(tag.value())
}

/// When a version was committed: versions are microseconds since the epoch.
pub(super) fn committed_at(version: Version) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_micros(version.0))
}

/// [`committed_at`] to the whole second, as HTTP dates (`If-Modified-Since`) have it.
pub(super) fn committed_at_second(version: Version) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_secs(version.0 / 1_000_000))
}

pub(super) fn now() -> SystemTime {
    #[allow(clippy::disallowed_methods)] // a timestamp, not a duration measurement
    SystemTime::now()
}

/// An SDK error as the S3 error a client knows what to do with: retry `503`s, give up
/// on `4xx`, report `500`s. The message keeps fdw's explanation.
pub(super) fn s3_error(err: &Error) -> S3Error {
    let code = match err.kind() {
        ErrorKind::NotFound | ErrorKind::Deleted => S3ErrorCode::NoSuchKey,
        ErrorKind::InvalidInput => S3ErrorCode::InvalidArgument,
        ErrorKind::Unavailable => S3ErrorCode::ServiceUnavailable,
        ErrorKind::ClusterFull => S3ErrorCode::SlowDown,
        ErrorKind::RangeNotSatisfiable => S3ErrorCode::InvalidRange,
        ErrorKind::PreconditionFailed => S3ErrorCode::PreconditionFailed,
        ErrorKind::Conflict => S3ErrorCode::ConditionalRequestConflict,
        ErrorKind::DataCorruption | ErrorKind::Internal | ErrorKind::Lost => {
            S3ErrorCode::InternalError
        }
    };
    S3Error::with_message(code, err.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_md5s_and_parse_back() {
        let tag = etag(Digest::of_bytes(b"bar"));
        assert_eq!(tag.as_strong(), Some("37b51d194a7513e45b56f6524f2d51f2"));
        assert_eq!(digest_of(&tag), Some(Digest::of_bytes(b"bar")));
        let parts = Digest::of_parts([Digest::of_bytes(b"bar"); 2]);
        assert!(etag(parts).value().ends_with("-2"));
        assert_eq!(digest_of(&etag(parts)), Some(parts));
        for junk in ["ABCORZ", "", "0006123456789abc"] {
            assert_eq!(digest_of(&ETag::Strong(junk.into())), None, "{junk}");
        }
    }
}
