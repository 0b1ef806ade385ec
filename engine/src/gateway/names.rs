//! fdw's facts of an object as S3 clients expect to see them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fdw_client::{Error, ErrorKind};
use fdw_net::Version;
use s3s::dto::{ETag, Timestamp};
use s3s::{S3Error, S3ErrorCode};

/// The ETag of a version: its number in hex. It names one version of one key, so
/// `If-Match` and caches work; it is not an MD5, and has no MD5's length, so no client
/// takes it for one and checks it against the bytes.
pub(super) fn etag(version: Version) -> ETag {
    ETag::Strong(format!("{:016x}", version.0))
}

/// The version an ETag of [`etag`] names, if it is one.
pub(super) fn version_of(tag: &ETag) -> Option<Version> {
    let hex = tag.value();
    (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .map(Version)
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
    fn etags_name_versions_and_are_no_md5() {
        let tag = etag(Version(0x0006_1234_5678_9abc));
        assert_eq!(tag.as_strong(), Some("0006123456789abc"));
        assert_ne!(tag.value().len(), 32);
        assert_ne!(etag(Version(1)), etag(Version(2)));
        assert_eq!(version_of(&tag), Some(Version(0x0006_1234_5678_9abc)));
        for junk in ["ABCORZ", "", "0006123456789abcd", "+006123456789abc"] {
            assert_eq!(version_of(&ETag::Strong(junk.into())), None, "{junk}");
        }
    }
}
