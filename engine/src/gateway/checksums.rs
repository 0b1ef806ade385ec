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
//! S3's `COMPOSITE` checksum, the checksum of the parts' checksums with `-N`; one with
//! CRC64NVME, or CRC32C asked as `FULL_OBJECT`, into the CRC of all its bytes, combined
//! from the parts' CRCs and sizes (`crc-fast`'s `checksum_combine`). Every part must then
//! have been uploaded with one, and the completion must name each part's; the object's
//! checksum the client sends must match. CRC32 is fdw's own and always whole-object.
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

/// How a multipart upload's part checksums combine into the object's, as S3 combines
/// them: `COMPOSITE`, the checksum of the parts' checksums with `-N` (SHA-256, SHA-1,
/// CRC32C), or `FULL_OBJECT`, the CRC of all the bytes, combined from the parts' CRCs
/// and sizes (CRC32C, CRC64NVME).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct UploadChecksum {
    pub(super) algorithm: String,
    pub(super) full_object: bool,
}

impl UploadChecksum {
    /// What CreateMultipartUpload's algorithm and type ask for; `None` for CRC32 (fdw's
    /// own, always whole-object) or none. A type the algorithm cannot have is refused, as
    /// S3 refuses it.
    pub(super) fn asked(
        algorithm: Option<&ChecksumAlgorithm>,
        kind: Option<&ChecksumType>,
    ) -> S3Result<Option<Self>> {
        let Some(algorithm) = algorithm.map(ChecksumAlgorithm::as_str) else {
            return Ok(None);
        };
        let full = kind.map(|k| k.as_str() == ChecksumType::FULL_OBJECT);
        let full_object = match (algorithm, full) {
            (ChecksumAlgorithm::CRC32, _) => return Ok(None),
            (ChecksumAlgorithm::SHA256 | ChecksumAlgorithm::SHA1, Some(true))
            | (ChecksumAlgorithm::CRC64NVME, Some(false)) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    format!("the checksum type {kind:?} is not valid with {algorithm}"),
                ));
            }
            (ChecksumAlgorithm::CRC64NVME, _) => true,
            (ChecksumAlgorithm::CRC32C, full) => full.unwrap_or(false),
            (ChecksumAlgorithm::SHA256 | ChecksumAlgorithm::SHA1, _) => false,
            (other, _) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidRequest,
                    format!("unknown checksum algorithm {other}"),
                ));
            }
        };
        Ok(Some(Self {
            algorithm: algorithm.to_owned(),
            full_object,
        }))
    }

    /// The type S3 names this combination by.
    pub(super) fn kind(&self) -> ChecksumType {
        ChecksumType::from_static(match self.full_object {
            true => ChecksumType::FULL_OBJECT,
            false => ChecksumType::COMPOSITE,
        })
    }

    /// The object's checksum from its parts' (base64, with their sizes, in order).
    pub(super) fn combine(&self, parts: &[(String, u64)]) -> S3Result<String> {
        let algorithm = self.algorithm.as_str();
        let mut raw = Vec::with_capacity(parts.len() * 32);
        let mut crc: Option<u64> = None;
        for (part, len) in parts {
            let bytes = BASE64.decode(part).map_err(|_| {
                S3Error::with_message(
                    S3ErrorCode::InvalidPart,
                    format!("a part's {algorithm} checksum {part:?} is not base64"),
                )
            })?;
            if self.full_object {
                let (value, combining) = crc_of(algorithm, &bytes).ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidPart,
                        format!("a part's {algorithm} checksum {part:?} is not one"),
                    )
                })?;
                crc = Some(match crc {
                    None => value,
                    Some(before) => crc_fast::checksum_combine(combining, before, value, *len),
                });
            } else {
                raw.extend_from_slice(&bytes);
            }
        }
        let whole = match (self.full_object, algorithm) {
            (true, ChecksumAlgorithm::CRC32C) => {
                crc.map(|c| BASE64.encode((c as u32).to_be_bytes()))
            }
            (true, ChecksumAlgorithm::CRC64NVME) => crc.map(|c| BASE64.encode(c.to_be_bytes())),
            (false, ChecksumAlgorithm::SHA256) => {
                Some(BASE64.encode(s3s::crypto::Sha256::checksum(&raw)))
            }
            (false, ChecksumAlgorithm::SHA1) => {
                Some(BASE64.encode(s3s::crypto::Sha1::checksum(&raw)))
            }
            (false, ChecksumAlgorithm::CRC32C) => {
                Some(BASE64.encode(s3s::crypto::Crc32c::checksum(&raw)))
            }
            _ => None,
        }
        .ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::NotImplemented,
                format!("{algorithm} checksums of parts are not combined this way"),
            )
        })?;
        Ok(match self.full_object {
            true => whole,
            false => format!("{whole}-{}", parts.len()),
        })
    }
}

/// A CRC checksum's value from its big-endian bytes, and the algorithm that combines it.
fn crc_of(algorithm: &str, bytes: &[u8]) -> Option<(u64, crc_fast::CrcAlgorithm)> {
    match algorithm {
        ChecksumAlgorithm::CRC32C => {
            let value = u32::from_be_bytes(bytes.try_into().ok()?);
            Some((u64::from(value), crc_fast::CrcAlgorithm::Crc32Iscsi))
        }
        ChecksumAlgorithm::CRC64NVME => {
            let value = u64::from_be_bytes(bytes.try_into().ok()?);
            Some((value, crc_fast::CrcAlgorithm::Crc64Nvme))
        }
        _ => None,
    }
}

/// The record a part's `algorithm` checksum is kept as.
pub(super) fn record_of(algorithm: &str) -> Option<&'static str> {
    KEPT.iter().find(|(a, _)| *a == algorithm).map(|(_, r)| *r)
}

/// The value of `algorithm` among `checksums`.
pub(super) fn value_of(checksums: &Checksum, algorithm: &str) -> Option<String> {
    field(&mut checksums.clone(), algorithm)?.clone()
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
        let sha256 = |full_object| UploadChecksum {
            algorithm: ChecksumAlgorithm::SHA256.to_owned(),
            full_object,
        };
        // The Ceph suite's values for one part of 1024 bytes of 'A'.
        let part = (
            "arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=".to_owned(),
            1024,
        );
        let whole = sha256(false).combine(&[part]).unwrap();
        assert_eq!(whole, "Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1");
        let parts = [
            "275VF5loJr1YYawit0XSHREhkFXYkkPKGuoK0x9VKxI=",
            "mrHwOfjTL5Zwfj74F05HOQGLdUb7E5szdCbxgUSq6NM=",
            "Vw7oB/nKQ5xWb3hNgbyfkvDiivl+U+/Dft48nfJfDow=",
        ]
        .map(|p| (p.to_owned(), 5 << 20));
        let whole = sha256(false).combine(&parts).unwrap();
        assert_eq!(whole, "uWBwpe1dxI4Vw8Gf0X9ynOdw/SS6VBzfWm9giiv1sf4=-3");
        let kept = kept(&with_records(
            Metadata::empty(),
            vec![(record_of("SHA256").unwrap().to_owned(), whole)],
        ));
        assert_eq!(kept_type(&kept).unwrap().as_str(), ChecksumType::COMPOSITE);
        let bad = [("not base64!".to_owned(), 1)];
        assert!(sha256(false).combine(&bad).is_err());
    }

    #[test]
    fn full_object_crcs_combine_to_the_crc_of_all_the_bytes() {
        let (a, b) = (vec![b'A'; 5 << 20], vec![b'B'; 1000]);
        let all = [a.clone(), b.clone()].concat();
        for (algorithm, of) in [
            (
                ChecksumAlgorithm::CRC32C,
                (|d: &[u8]| BASE64.encode(s3s::crypto::Crc32c::checksum(d))) as fn(&[u8]) -> String,
            ),
            (ChecksumAlgorithm::CRC64NVME, |d: &[u8]| {
                BASE64.encode(s3s::crypto::Crc64Nvme::checksum(d))
            }),
        ] {
            let asked = Some(ChecksumAlgorithm::from(algorithm.to_owned()));
            let full = Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
            let upload = UploadChecksum::asked(asked.as_ref(), full.as_ref())
                .unwrap()
                .unwrap();
            assert!(upload.full_object);
            let parts = [(of(&a), a.len() as u64), (of(&b), b.len() as u64)];
            assert_eq!(upload.combine(&parts).unwrap(), of(&all), "{algorithm}");
        }
    }

    #[test]
    fn each_algorithm_has_the_types_s3_allows() {
        let asked = |algorithm: &str, kind: Option<&'static str>| {
            let algorithm = ChecksumAlgorithm::from(algorithm.to_owned());
            let kind = kind.map(ChecksumType::from_static);
            UploadChecksum::asked(Some(&algorithm), kind.as_ref()).map(|u| u.map(|u| u.full_object))
        };
        assert_eq!(asked("CRC32", None).unwrap(), None, "fdw's own CRC32");
        assert_eq!(asked("SHA256", None).unwrap(), Some(false));
        assert!(asked("SHA1", Some(ChecksumType::FULL_OBJECT)).is_err());
        assert_eq!(asked("CRC32C", None).unwrap(), Some(false));
        assert_eq!(
            asked("CRC32C", Some(ChecksumType::FULL_OBJECT)).unwrap(),
            Some(true)
        );
        assert_eq!(asked("CRC64NVME", None).unwrap(), Some(true));
        assert!(asked("CRC64NVME", Some(ChecksumType::COMPOSITE)).is_err());
    }
}
