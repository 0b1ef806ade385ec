//! An object's headers as S3 keeps them: the standard ones as the object's own fields
//! and `x-amz-meta-*` as its user metadata, beside fdw's own records (`fdw-version`,
//! `fdw-etag`). Any S3 client reading the under-store then sees the headers the object
//! was written with, and a node that learns the object back serves them again.

use std::collections::HashMap;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

use crate::under_store::{
    ETAG_METADATA, Fence, RECORD_HEADER_PREFIX, RECORD_METADATA_PREFIX, RESERVED_METADATA_PREFIX,
    VERSION_METADATA,
};

/// S3's limit on an object's user metadata: names and values, in bytes.
const S3_MAX_USER_METADATA_BYTES: usize = 2048;
/// The prefix of user metadata headers.
const USER_PREFIX: &str = "x-amz-meta-";
/// What S3 (and fdw's gateway) answers for an object written without a Content-Type.
/// It is sent when there is none, else the SDK would send its own default
/// (`application/octet-stream`) and the store would then serve another type than fdw
/// did; it is read back as none given.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// What a write sets: the fields of a PutObject or CreateMultipartUpload.
#[derive(Debug, Default)]
pub(crate) struct WriteHeaders {
    pub(crate) content_type: Option<String>,
    pub(crate) cache_control: Option<String>,
    pub(crate) content_disposition: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) content_language: Option<String>,
    pub(crate) expires: Option<DateTime>,
    pub(crate) metadata: Option<HashMap<String, String>>,
}

impl WriteHeaders {
    /// The fields for a write under `fence`: its headers, version and ETag. A header S3
    /// has no place for, or an `Expires` that is not an HTTP date, is left out (logged):
    /// the gateway stores only the ones listed in [`Fence::headers`].
    pub(crate) fn of(fence: &Fence) -> Self {
        let mut out = Self {
            content_type: Some(DEFAULT_CONTENT_TYPE.to_owned()),
            ..Self::default()
        };
        let mut metadata: HashMap<String, String> = [
            fence
                .version
                .map(|v| (VERSION_METADATA.to_owned(), v.to_string())),
            fence.etag.clone().map(|e| (ETAG_METADATA.to_owned(), e)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut records = Vec::new();
        for (name, value) in &fence.headers {
            let text = Some(value.clone());
            match name.as_str() {
                "content-type" => out.content_type = text,
                "cache-control" => out.cache_control = text,
                "content-disposition" => out.content_disposition = text,
                "content-encoding" => out.content_encoding = text,
                "content-language" => out.content_language = text,
                "expires" => match DateTime::from_str(value, Format::HttpDate) {
                    Ok(when) => out.expires = Some(when),
                    Err(_) => tracing::warn!(value, "Expires is not an HTTP date; not kept"),
                },
                other => match other.strip_prefix(USER_PREFIX) {
                    Some(user) if !user.starts_with(RESERVED_METADATA_PREFIX) => {
                        metadata.insert(user.to_owned(), value.clone());
                    }
                    _ => match other.strip_prefix(RECORD_HEADER_PREFIX) {
                        Some(record) => {
                            let name = format!("{RECORD_METADATA_PREFIX}{record}");
                            records.push((name, value.clone()));
                        }
                        None => tracing::warn!(name, "no place for this header in S3; not kept"),
                    },
                },
            }
        }
        // The gateway's records are what it can do without (a read by part number, a
        // checksum returned): they go only while S3's limit on user metadata has room,
        // which a write over it would fail for ever.
        let mut used: usize = metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        for (name, value) in records {
            let size = name.len() + value.len();
            if used + size > S3_MAX_USER_METADATA_BYTES {
                tracing::warn!(
                    name,
                    "no room for this record in S3's user metadata; not kept"
                );
                continue;
            }
            used += size;
            metadata.insert(name, value);
        }
        out.metadata = (!metadata.is_empty()).then_some(metadata);
        out
    }
}

/// The headers of the object `head` describes, sorted by name, without fdw's records.
pub(crate) fn read_headers(head: &HeadObjectOutput) -> Vec<(String, String)> {
    let standard = [
        ("cache-control", head.cache_control()),
        ("content-disposition", head.content_disposition()),
        ("content-encoding", head.content_encoding()),
        ("content-language", head.content_language()),
        (
            "content-type",
            head.content_type().filter(|t| *t != DEFAULT_CONTENT_TYPE),
        ),
        ("expires", head.expires_string()),
    ];
    let user = head
        .metadata()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            if let Some(record) = name.strip_prefix(RECORD_METADATA_PREFIX) {
                return Some((format!("{RECORD_HEADER_PREFIX}{record}"), value.clone()));
            }
            (!name.starts_with(RESERVED_METADATA_PREFIX))
                .then(|| (format!("{USER_PREFIX}{name}"), value.clone()))
        });
    let mut headers: Vec<(String, String)> = standard
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())))
        .chain(user)
        .collect();
    headers.sort();
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(headers: &[(&str, &str)]) -> Fence {
        Fence {
            version: Some(7),
            etag: Some("0123456789abcdef0123456789abcdef".into()),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            expect: None,
        }
    }

    #[test]
    fn headers_go_to_their_fields_and_metadata_beside_fdws_records() {
        let expires = "Wed, 21 Oct 2026 07:28:00 GMT";
        let written = WriteHeaders::of(&fence(&[
            ("content-type", "text/csv"),
            ("cache-control", "no-cache"),
            ("expires", expires),
            ("x-amz-meta-owner", "pipeline stage 2"),
            ("x-amz-meta-fdw-version", "99"),
            ("x-fdw-parts", "5242880*3,1"),
            ("x-unknown", "dropped"),
        ]));
        assert_eq!(written.content_type.as_deref(), Some("text/csv"));
        assert_eq!(written.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(
            written.expires.map(|e| e.fmt(Format::HttpDate).unwrap()),
            Some(expires.to_owned())
        );
        let metadata = written.metadata.unwrap();
        assert_eq!(metadata.len(), 4, "{metadata:?}");
        assert_eq!(metadata["owner"], "pipeline stage 2");
        assert_eq!(
            metadata["fdw-h-parts"], "5242880*3,1",
            "the gateway's record"
        );
        assert_eq!(
            metadata[VERSION_METADATA], "7",
            "a header never replaces a record"
        );

        // Records past S3's 2 KiB of user metadata are left out; the headers are not.
        let owner = "o".repeat(1900);
        let crowded = WriteHeaders::of(&fence(&[
            ("x-amz-meta-owner", &owner),
            ("x-fdw-part-checksums", &"c".repeat(200)),
            ("x-fdw-parts", "5*2"),
        ]));
        let metadata = crowded.metadata.unwrap();
        assert_eq!(metadata["owner"], owner);
        assert_eq!(metadata["fdw-h-parts"], "5*2", "a record that fits is kept");
        assert!(!metadata.contains_key("fdw-h-part-checksums"));
        let bytes: usize = metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(bytes <= S3_MAX_USER_METADATA_BYTES, "{bytes}");

        let bad_date = WriteHeaders::of(&fence(&[("expires", "tomorrow")]));
        assert!(bad_date.expires.is_none());
        assert_eq!(
            bad_date.content_type.as_deref(),
            Some(DEFAULT_CONTENT_TYPE),
            "none given is what S3 would answer, not the SDK's default"
        );
    }

    #[test]
    fn headers_and_gateway_records_read_back_without_fdws_own() {
        let head = HeadObjectOutput::builder()
            .content_type("text/csv")
            .content_language("en")
            .expires_string("Wed, 21 Oct 2026 07:28:00 GMT")
            .metadata("Owner", "stage 2")
            .metadata(VERSION_METADATA, "7")
            .metadata(ETAG_METADATA, "x")
            .metadata("fdw-h-parts", "5*2")
            .build();
        let untyped = HeadObjectOutput::builder()
            .content_type(DEFAULT_CONTENT_TYPE)
            .build();
        assert!(read_headers(&untyped).is_empty());
        assert_eq!(
            read_headers(&head),
            [
                ("content-language", "en"),
                ("content-type", "text/csv"),
                ("expires", "Wed, 21 Oct 2026 07:28:00 GMT"),
                ("x-amz-meta-owner", "stage 2"),
                ("x-fdw-parts", "5*2"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
    }
}
