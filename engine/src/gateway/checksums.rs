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

/// The value of `algorithm` among `checksums`.
fn value<'a>(checksums: &'a Checksum, algorithm: &str) -> Option<&'a str> {
    match algorithm {
        ChecksumAlgorithm::CRC32 => &checksums.checksum_crc32,
        ChecksumAlgorithm::CRC32C => &checksums.checksum_crc32c,
        ChecksumAlgorithm::CRC64NVME => &checksums.checksum_crc64nvme,
        ChecksumAlgorithm::SHA1 => &checksums.checksum_sha1,
        ChecksumAlgorithm::SHA256 => &checksums.checksum_sha256,
        _ => return None,
    }
    .as_deref()
}

/// The value of `algorithm` among `checksums`, owned.
pub(super) fn value_of(checksums: &Checksum, algorithm: &str) -> Option<String> {
    value(checksums, algorithm).map(str::to_owned)
}

/// An answer's fields holding one checksum, `value` of `algorithm`, and `kind`.
pub(super) fn one(algorithm: &str, value: String, kind: Option<ChecksumType>) -> Option<Checksum> {
    let mut out = Checksum {
        checksum_type: kind,
        ..Checksum::default()
    };
    *match algorithm {
        ChecksumAlgorithm::CRC32 => &mut out.checksum_crc32,
        ChecksumAlgorithm::CRC32C => &mut out.checksum_crc32c,
        ChecksumAlgorithm::CRC64NVME => &mut out.checksum_crc64nvme,
        ChecksumAlgorithm::SHA1 => &mut out.checksum_sha1,
        ChecksumAlgorithm::SHA256 => &mut out.checksum_sha256,
        _ => return None,
    } = Some(value);
    Some(out)
}

/// The checksum fields of any S3 type that has them (a completion's part, its input),
/// as one [`Checksum`].
macro_rules! checksums_of {
    ($from:ident) => {
        s3s::dto::Checksum {
            checksum_crc32: $from.checksum_crc32.clone(),
            checksum_crc32c: $from.checksum_crc32c.clone(),
            checksum_crc64nvme: $from.checksum_crc64nvme.clone(),
            checksum_sha1: $from.checksum_sha1.clone(),
            checksum_sha256: $from.checksum_sha256.clone(),
            ..s3s::dto::Checksum::default()
        }
    };
}
pub(super) use checksums_of;

/// Fills an answer's checksum fields (GET, HEAD, PUT and completion share their names).
macro_rules! serve_checksums {
    ($output:expr, $checksums:expr) => {{
        let checksums = $checksums;
        $output.checksum_crc32 = checksums.checksum_crc32;
        $output.checksum_crc32c = checksums.checksum_crc32c;
        $output.checksum_sha1 = checksums.checksum_sha1;
        $output.checksum_sha256 = checksums.checksum_sha256;
        $output.checksum_crc64nvme = checksums.checksum_crc64nvme;
        $output.checksum_type = checksums.checksum_type;
    }};
}
pub(super) use serve_checksums;

/// The records of the checksums a write sent (checked before the write can succeed).
pub(super) fn records(sent: &Checksum) -> Vec<(String, String)> {
    KEPT.iter()
        .filter_map(|(algorithm, record)| {
            Some(((*record).to_owned(), value(sent, algorithm)?.to_owned()))
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

/// The checksums kept with an object of these headers, as an answer's fields, with their
/// type: composite when it ends in `-N`. `None` if the writer sent none.
fn kept(metadata: &Metadata) -> Option<Checksum> {
    let get = |algorithm| {
        record_of(algorithm)
            .and_then(|record| metadata.get(record))
            .map(str::to_owned)
    };
    let out = Checksum {
        checksum_sha256: get(ChecksumAlgorithm::SHA256),
        checksum_sha1: get(ChecksumAlgorithm::SHA1),
        checksum_crc32c: get(ChecksumAlgorithm::CRC32C),
        checksum_crc64nvme: get(ChecksumAlgorithm::CRC64NVME),
        ..Checksum::default()
    };
    let any = KEPT
        .iter()
        .find_map(|(algorithm, _)| value(&out, algorithm))?;
    let kind = match any.contains('-') {
        true => ChecksumType::COMPOSITE,
        false => ChecksumType::FULL_OBJECT,
    };
    Some(Checksum {
        checksum_type: Some(ChecksumType::from_static(kind)),
        ..out
    })
}

/// The whole object's checksums, as a GET, HEAD or completion answers them: those the
/// writer sent, kept in its headers, else fdw's own CRC32 of it.
pub(super) fn of_object(metadata: &Metadata, crc: u32) -> Checksum {
    kept(metadata).unwrap_or_else(|| Checksum {
        checksum_crc32: Some(fdw_persist::crc32_header(crc)),
        checksum_type: Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
        ..Checksum::default()
    })
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
        let found = kept(&metadata).unwrap();
        assert_eq!(found.checksum_sha256, sent.checksum_sha256);
        assert_eq!(found.checksum_crc32, None);
        assert_eq!(
            found.checksum_type.unwrap().as_str(),
            ChecksumType::FULL_OBJECT
        );
        assert!(kept(&Metadata::empty()).is_none());
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
        let found = kept(&with_records(
            Metadata::empty(),
            vec![(record_of("SHA256").unwrap().to_owned(), whole)],
        ))
        .unwrap();
        assert_eq!(
            found.checksum_type.unwrap().as_str(),
            ChecksumType::COMPOSITE
        );
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
