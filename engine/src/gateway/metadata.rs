//! An object's headers: taken from a write as sent, stored with the object, returned on
//! every read. rclone and `aws s3 sync` compare them, browsers and Spark act on
//! `Content-Type` and `Content-Encoding`: a dropped header is a wrong answer.

use fdw_net::wire::{MAX_METADATA_BYTES, Metadata};
use s3s::dto::{Timestamp, TimestampFormat};
use s3s::{S3Error, S3ErrorCode, S3Result};

/// The standard headers an object keeps, as S3 keeps them.
const STANDARD: [&str; 6] = [
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
];
/// User metadata: `x-amz-meta-<name>`, returned under the same header.
const USER_PREFIX: &str = "x-amz-meta-";

/// What S3 answers when none was given.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The object headers of a write request. `aws-chunked` is how the body was sent, not
/// what it is, so it is left out of `Content-Encoding`. Too much metadata is refused
/// with S3's error, naming the limit.
pub(super) fn from_headers(headers: &http::HeaderMap) -> S3Result<Metadata> {
    let mut entries = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !(STANDARD.contains(&name) || name.starts_with(USER_PREFIX)) {
            continue;
        }
        let value = String::from_utf8(value.as_bytes().to_vec()).map_err(|_| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("header {name} is not UTF-8"),
            )
        })?;
        let value = if name == "content-encoding" {
            let kept: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|coding| !coding.is_empty() && *coding != "aws-chunked")
                .collect();
            if kept.is_empty() {
                continue;
            }
            kept.join(", ")
        } else {
            value
        };
        entries.push((name.to_owned(), value));
    }
    let bytes: usize = entries.iter().map(|(n, v)| n.len() + v.len()).sum();
    let code = match bytes > MAX_METADATA_BYTES {
        true => S3ErrorCode::MetadataTooLarge,
        false => S3ErrorCode::InvalidArgument, // a reserved name
    };
    Metadata::new(entries).map_err(|e| S3Error::with_message(code, e.to_string()))
}

/// An object's headers as the fields of a GET or HEAD answer.
pub(super) struct Served {
    pub(super) content_type: String,
    pub(super) cache_control: Option<String>,
    pub(super) content_disposition: Option<String>,
    pub(super) content_encoding: Option<String>,
    pub(super) content_language: Option<String>,
    pub(super) expires: Option<Timestamp>,
    pub(super) user: Option<s3s::dto::Metadata>,
}

impl Served {
    pub(super) fn new(metadata: &Metadata) -> Self {
        let get = |name: &str| metadata.get(name).map(str::to_owned);
        let user: s3s::dto::Metadata = metadata
            .iter()
            .filter_map(|(n, v)| Some((n.strip_prefix(USER_PREFIX)?.to_owned(), v.to_owned())))
            .collect();
        Self {
            content_type: get("content-type").unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
            cache_control: get("cache-control"),
            content_disposition: get("content-disposition"),
            content_encoding: get("content-encoding"),
            content_language: get("content-language"),
            // Sent back as given when it is a date; an unparsable one S3 drops too.
            expires: metadata
                .get("expires")
                .and_then(|v| Timestamp::parse(TimestampFormat::HttpDate, v).ok()),
            user: (!user.is_empty()).then_some(user),
        }
    }
}

/// Fills a GET or HEAD output's header fields (the two types share their names).
macro_rules! serve_metadata {
    ($output:expr, $served:expr) => {{
        let served = $served;
        $output.content_type = Some(served.content_type);
        $output.cache_control = served.cache_control;
        $output.content_disposition = served.content_disposition;
        $output.content_encoding = served.content_encoding;
        $output.content_language = served.content_language;
        $output.expires = served.expires;
        $output.metadata = served.user;
    }};
}
pub(super) use serve_metadata;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_static(n),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn object_headers_are_kept_and_the_rest_left_out() {
        let meta = from_headers(&headers(&[
            ("content-type", "text/csv"),
            ("x-amz-meta-stage", "2"),
            ("content-encoding", "aws-chunked, gzip"),
            ("authorization", "AWS4-HMAC-SHA256 ..."),
            ("content-length", "10"),
        ]))
        .unwrap();
        let names: Vec<&str> = meta.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["content-encoding", "content-type", "x-amz-meta-stage"]
        );
        assert_eq!(meta.get("content-encoding"), Some("gzip"));
        let served = Served::new(&meta);
        assert_eq!(served.content_type, "text/csv");
        assert_eq!(served.user.unwrap()["stage"], "2");
        let bare = from_headers(&headers(&[("content-encoding", "aws-chunked")])).unwrap();
        assert!(bare.is_empty());
        assert_eq!(Served::new(&bare).content_type, DEFAULT_CONTENT_TYPE);
    }

    #[test]
    fn too_much_or_reserved_metadata_is_refused_by_name() {
        let big: &'static str = Box::leak("v".repeat(4000).into_boxed_str());
        let mut map = http::HeaderMap::new();
        map.insert("x-amz-meta-big", http::HeaderValue::from_static(big));
        let err = from_headers(&map).unwrap_err();
        assert_eq!(err.code(), &S3ErrorCode::MetadataTooLarge);
        assert!(err.message().unwrap().contains("MAX_METADATA_BYTES"));
        // fdw's own records in an S3 under-store cannot be overwritten by a header.
        let reserved = from_headers(&headers(&[("x-amz-meta-fdw-etag", "x")])).unwrap_err();
        assert_eq!(reserved.code(), &S3ErrorCode::InvalidArgument);
        assert!(reserved.message().unwrap().contains("fdw's own records"));
    }
}
