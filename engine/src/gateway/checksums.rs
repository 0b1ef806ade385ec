//! Checksums a client sends beside fdw's own CRC32 (SHA-256, SHA-1, CRC32C, CRC64NVME),
//! kept with the object and returned as S3 returns them.
//!
//! A checksum sent in a header of a PutObject or UploadPart is checked as the body
//! streams in ([`checked_body`](super::checked_body)): a body that does not match is
//! refused before its last chunk reaches the cluster, so a kept checksum is always the
//! bytes'. It is kept as a record with the object (`x-fdw-checksum-sha256`, never served
//! as a header), replicated and persisted with the headers, and returned by GET and HEAD
//! of the whole object when asked (`x-amz-checksum-mode: ENABLED`).
//!
//! A multipart upload started with a SHA-256, SHA-1 or CRC32C algorithm completes into
//! S3's `COMPOSITE` checksum: the checksum of the parts' checksums, with `-N`. Every part
//! must then have been uploaded with one, and the completion must name each part's; a
//! composite the client sends must match. CRC64NVME, which S3 combines into a
//! full-object CRC instead, is checked per part but not combined; CRC32 is fdw's own and
//! always whole-object.
//!
//! Not kept: a checksum sent only in a trailer (its value arrives after the put began, and
//! the records travel at its start) or computed for an algorithm asked for without a
//! value. Such bodies are still checked.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fdw_net::wire::Metadata;
use s3s::crypto::Checksum as _;
use s3s::dto::{Checksum, ChecksumAlgorithm, ChecksumType};
use s3s::{S3Error, S3ErrorCode, S3Result};

/// Each kept algorithm: its S3 name and the record it is kept as.
const KEPT: [(&str, &str); 4] = [
    (ChecksumAlgorithm::SHA256, "x-fdw-checksum-sha256"),
    (ChecksumAlgorithm::SHA1, "x-fdw-checksum-sha1"),
    (ChecksumAlgorithm::CRC32C, "x-fdw-checksum-crc32c"),
    (ChecksumAlgorithm::CRC64NVME, "x-fdw-checksum-crc64nvme"),
];

/// The field of `checksums` for `algorithm` (one of [`KEPT`]).
fn field<'a>(checksums: &'a mut Checksum, algorithm: &str) -> Option<&'a mut Option<String>> {
    Some(match algorithm {
        ChecksumAlgorithm::SHA256 => &mut checksums.checksum_sha256,
        ChecksumAlgorithm::SHA1 => &mut checksums.checksum_sha1,
        ChecksumAlgorithm::CRC32C => &mut checksums.checksum_crc32c,
        ChecksumAlgorithm::CRC64NVME => &mut checksums.checksum_crc64nvme,
        _ => return None,
    })
}

/// The records of the checksums a write sent (checked before the write can succeed).
pub(super) fn records(sent: &Checksum) -> Vec<(String, String)> {
    let mut sent = sent.clone();
    KEPT.iter()
        .filter_map(|(algorithm, record)| {
            let value = field(&mut sent, algorithm)?.take()?;
            Some(((*record).to_owned(), value))
        })
        .collect()
}

/// `metadata` with `records` beside it; a record that does not fit is left out (the
/// checksum is then not returned, never a wrong one).
pub(super) fn with_records(metadata: Metadata, records: Vec<(String, String)>) -> Metadata {
    if records.is_empty() {
        return metadata;
    }
    let own = || metadata.iter().map(|(n, v)| (n.to_owned(), v.to_owned()));
    let entries: Vec<(String, String)> = own().chain(records).collect();
    Metadata::new(entries).unwrap_or(metadata)
}

/// The checksums kept with an object, as an answer's fields.
pub(super) fn kept(metadata: &Metadata) -> Checksum {
    let mut out = Checksum::default();
    for (algorithm, record) in KEPT {
        if let (Some(value), Some(slot)) = (metadata.get(record), field(&mut out, algorithm)) {
            *slot = Some(value.to_owned());
        }
    }
    out
}

/// The type of the checksums [`kept`] found, if any.
pub(super) fn kept_type(checksums: &Checksum) -> Option<ChecksumType> {
    let values = [
        &checksums.checksum_sha256,
        &checksums.checksum_sha1,
        &checksums.checksum_crc32c,
        &checksums.checksum_crc64nvme,
    ];
    let value = values.into_iter().flatten().next()?;
    Some(ChecksumType::from_static(if value.contains('-') {
        ChecksumType::COMPOSITE
    } else {
        ChecksumType::FULL_OBJECT
    }))
}

/// The algorithm of a multipart upload whose parts' checksums combine (SHA-256, SHA-1,
/// CRC32C), if `algorithm` is one.
pub(super) fn composable(algorithm: Option<&ChecksumAlgorithm>) -> Option<String> {
    let name = algorithm?.as_str();
    matches!(
        name,
        ChecksumAlgorithm::SHA256 | ChecksumAlgorithm::SHA1 | ChecksumAlgorithm::CRC32C
    )
    .then(|| name.to_owned())
}

/// The record a part's `algorithm` checksum is kept as.
pub(super) fn record_of(algorithm: &str) -> Option<&'static str> {
    KEPT.iter().find(|(a, _)| *a == algorithm).map(|(_, r)| *r)
}

/// The value of `algorithm` among `checksums`.
pub(super) fn value_of(checksums: &Checksum, algorithm: &str) -> Option<String> {
    field(&mut checksums.clone(), algorithm)?.clone()
}

/// S3's composite checksum of parts whose `algorithm` checksums are `parts` (base64):
/// the checksum of their bytes one after another, then `-N`.
pub(super) fn composite(algorithm: &str, parts: &[String]) -> S3Result<String> {
    let mut raw = Vec::with_capacity(parts.len() * 32);
    for part in parts {
        let bytes = BASE64.decode(part).map_err(|_| {
            S3Error::with_message(
                S3ErrorCode::InvalidPart,
                format!("a part's {algorithm} checksum {part:?} is not base64"),
            )
        })?;
        raw.extend_from_slice(&bytes);
    }
    let whole = match algorithm {
        ChecksumAlgorithm::SHA256 => BASE64.encode(s3s::crypto::Sha256::checksum(&raw)),
        ChecksumAlgorithm::SHA1 => BASE64.encode(s3s::crypto::Sha1::checksum(&raw)),
        ChecksumAlgorithm::CRC32C => BASE64.encode(s3s::crypto::Crc32c::checksum(&raw)),
        other => {
            return Err(S3Error::with_message(
                S3ErrorCode::NotImplemented,
                format!("{other} checksums of parts are not combined"),
            ));
        }
    };
    Ok(format!("{whole}-{}", parts.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_checksums_are_kept_and_found_again() {
        let sent = Checksum {
            checksum_sha256: Some("arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=".into()),
            checksum_crc32: Some("fdw keeps its own".into()),
            ..Checksum::default()
        };
        let records = records(&sent);
        assert_eq!(records.len(), 1);
        let metadata = with_records(Metadata::empty(), records);
        let kept = kept(&metadata);
        assert_eq!(kept.checksum_sha256, sent.checksum_sha256);
        assert_eq!(kept.checksum_crc32, None);
        assert_eq!(
            kept_type(&kept).unwrap().as_str(),
            ChecksumType::FULL_OBJECT
        );
        assert!(kept_type(&Checksum::default()).is_none());
    }

    #[test]
    fn composites_are_s3s() {
        // The Ceph suite's values for one part of 1024 bytes of 'A'.
        let part = "arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=".to_owned();
        let whole = composite(ChecksumAlgorithm::SHA256, &[part]).unwrap();
        assert_eq!(whole, "Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1");
        let parts = [
            "275VF5loJr1YYawit0XSHREhkFXYkkPKGuoK0x9VKxI=",
            "mrHwOfjTL5Zwfj74F05HOQGLdUb7E5szdCbxgUSq6NM=",
            "Vw7oB/nKQ5xWb3hNgbyfkvDiivl+U+/Dft48nfJfDow=",
        ]
        .map(str::to_owned);
        let whole = composite(ChecksumAlgorithm::SHA256, &parts).unwrap();
        assert_eq!(whole, "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=-3");
        let kept = kept(&with_records(
            Metadata::empty(),
            vec![(record_of("SHA256").unwrap().to_owned(), whole)],
        ));
        assert_eq!(kept_type(&kept).unwrap().as_str(), ChecksumType::COMPOSITE);
        assert!(composite("CRC64NVME", &[]).is_err());
        assert!(composite("SHA256", &["not base64!".to_owned()]).is_err());
    }
}
