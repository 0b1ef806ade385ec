//! GetObject and HeadObject by `partNumber`: which bytes part N of an object is.
//!
//! A completed multipart upload keeps its parts' sizes as a record with the object
//! ([`PARTS_RECORD`], never served as a header), in [`PartSizes`]' text. The record
//! travels as the object's headers do: replicated, persisted, learned back. An object of
//! one PUT is one part. A composed object without the record (too many different sizes
//! to keep, or written before the record existed) is refused by part number, never
//! answered with the wrong bytes.

use std::ops::Range;

use fdw_net::wire::{Digest, Metadata, ObjectInfo, PartChecksums, PartSizes};
use s3s::dto::{Checksum, GetObjectAttributesParts, ObjectPart};

use super::checksums;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

/// The record of a composed object's part sizes.
pub(super) const PARTS_RECORD: &str = "x-fdw-parts";
/// The record of a composed object's part checksums.
pub(super) const PART_CHECKSUMS_RECORD: &str = "x-fdw-part-checksums";
/// Parts listed in one GetObjectAttributes answer unless it asks for fewer.
const MAX_LISTED_PARTS: i32 = 1000;

/// The records a completion keeps of its parts: their sizes, and their `algorithm`
/// checksums `values` (each left out if too long to keep).
pub(super) fn records(
    parts: &[(i32, ObjectInfo)],
    algorithm: &str,
    values: Vec<String>,
) -> Vec<(String, String)> {
    let sizes: Vec<u64> = parts.iter().map(|(_, info)| info.len).collect();
    let checksums = PartChecksums {
        algorithm: algorithm.to_owned(),
        values,
    };
    [
        PartSizes::encode(&sizes).map(|text| (PARTS_RECORD.to_owned(), text)),
        checksums
            .encode()
            .map(|text| (PART_CHECKSUMS_RECORD.to_owned(), text)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The part checksums kept with a composed object, if they were kept and are as many
/// as its parts.
fn checksums(info: &ObjectInfo) -> Option<PartChecksums> {
    let kept = PartChecksums::decode(info.metadata.get(PART_CHECKSUMS_RECORD)?)?;
    (kept.values.len() == usize::from(info.digest.parts())).then_some(kept)
}

/// Part `number`'s checksum in `kept`, as an answer's fields, with the type of the
/// object's checksum (a part of a composite is read as one).
fn checksum_in(kept: &PartChecksums, info: &ObjectInfo, number: i32) -> Option<Checksum> {
    let value = kept.values.get(usize::try_from(number - 1).ok()?)?.clone();
    let kind = checksums::of_object(&info.metadata, info.crc).checksum_type;
    checksums::one(&kept.algorithm, value, kind)
}

/// Part `number`'s checksum, as an answer's fields, if it was kept.
pub(super) fn part_checksum(info: &ObjectInfo, number: i32) -> Option<Checksum> {
    checksum_in(&checksums(info)?, info, number)
}

/// GetObjectAttributes' `ObjectParts` of a composed object: its count, and the parts
/// after `marker`, at most `max`, with their sizes, and their checksums where kept.
/// Without the sizes the parts cannot be listed, and that is said, not left out.
pub(super) fn listed(
    info: &ObjectInfo,
    max: Option<i32>,
    marker: Option<i32>,
) -> S3Result<GetObjectAttributesParts> {
    let count = i32::from(info.digest.parts());
    let marker = marker.unwrap_or(0).max(0);
    let max = max.unwrap_or(MAX_LISTED_PARTS).clamp(0, MAX_LISTED_PARTS);
    let sizes = sizes(&info.metadata, info.digest, info.len)?;
    let kept = checksums(info);
    let parts: Vec<ObjectPart> = (marker..count)
        .take(max as usize)
        .map(|index| {
            let number = index + 1;
            let checksum = kept
                .as_ref()
                .and_then(|kept| checksum_in(kept, info, number))
                .unwrap_or_default();
            ObjectPart {
                part_number: Some(number),
                size: sizes.get(index as usize).map(|s| *s as i64),
                checksum_crc32: checksum.checksum_crc32,
                checksum_crc32c: checksum.checksum_crc32c,
                checksum_crc64nvme: checksum.checksum_crc64nvme,
                checksum_sha1: checksum.checksum_sha1,
                checksum_sha256: checksum.checksum_sha256,
            }
        })
        .collect();
    let next = marker + parts.len() as i32;
    Ok(GetObjectAttributesParts {
        total_parts_count: Some(count),
        max_parts: Some(max),
        part_number_marker: Some(marker),
        next_part_number_marker: Some(next),
        is_truncated: Some(next < count),
        parts: Some(parts),
    })
}

/// The sizes of an object's parts: one for an object of one PUT; for a composed one,
/// its record, believed only if it names as many parts as the object has and adds up to
/// its length. Without it, reads by part are refused, never guessed.
fn sizes(metadata: &Metadata, digest: Digest, len: u64) -> S3Result<Vec<u64>> {
    match digest.parts() {
        0 => Ok(vec![len]),
        parts => metadata
            .get(PARTS_RECORD)
            .and_then(PartSizes::decode)
            .filter(|sizes| sizes.len() == usize::from(parts) && sizes.iter().sum::<u64>() == len)
            .ok_or_else(|| {
                s3_error!(
                    NotImplemented,
                    "the part sizes of this object were not kept (more than \
                     MAX_PART_SIZES_BYTES of them, or written by an older fdw): read it by range"
                )
            }),
    }
}

/// S3's limit on part numbers.
const MAX_PART_NUMBER: i32 = 10_000;

/// The bytes of part `number` of an object of `len` bytes with this digest and
/// metadata, and how many parts it has.
pub(super) fn part_range(
    metadata: &Metadata,
    digest: Digest,
    len: u64,
    number: i32,
) -> S3Result<(Range<u64>, usize)> {
    if !(1..=MAX_PART_NUMBER).contains(&number) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    let sizes = sizes(metadata, digest, len)?;
    let index = (number - 1) as usize;
    let Some(&size) = sizes.get(index) else {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidPart,
            format!("the object has {} parts, not {number}", sizes.len()),
        ));
    };
    let start: u64 = sizes[..index].iter().sum();
    Ok((start..start + size, sizes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn composed(sizes: &[u64]) -> (Metadata, Digest, u64) {
        let text = PartSizes::encode(sizes).unwrap();
        let metadata = Metadata::new(vec![(PARTS_RECORD.to_owned(), text)]).unwrap();
        let digest = Digest::of_parts(sizes.iter().map(|_| Digest::of_bytes(b"part")));
        (metadata, digest, sizes.iter().sum())
    }

    #[test]
    fn each_part_is_found() {
        let mib = 1 << 20;
        let (metadata, digest, len) = composed(&[5 * mib, 5 * mib, 5 * mib, mib]);
        let part = |n| part_range(&metadata, digest, len, n).map_err(|e| e.code().clone());
        assert_eq!(part(1), Ok((0..5 * mib, 4)));
        assert_eq!(part(3), Ok((10 * mib..15 * mib, 4)));
        assert_eq!(part(4), Ok((15 * mib..16 * mib, 4)));
        assert_eq!(part(5), Err(S3ErrorCode::InvalidPart));
        assert_eq!(part(0), Err(S3ErrorCode::InvalidArgument));
    }

    #[test]
    fn an_object_of_one_put_is_one_part_and_a_missing_record_is_refused() {
        let digest = Digest::of_bytes(b"body");
        let part = |n| part_range(&Metadata::empty(), digest, 4, n).map_err(|e| e.code().clone());
        assert_eq!(part(1), Ok((0..4, 1)));
        assert_eq!(part(2), Err(S3ErrorCode::InvalidPart));
        let composed = Digest::of_parts([digest, digest]);
        let refused = part_range(&Metadata::empty(), composed, 8, 1).unwrap_err();
        assert_eq!(refused.code(), &S3ErrorCode::NotImplemented);
        // A record that does not add up to the object is not believed.
        let (metadata, digest, len) = composed_sizes();
        assert!(part_range(&metadata, digest, len + 1, 1).is_err());
    }

    fn composed_sizes() -> (Metadata, Digest, u64) {
        composed(&[10, 20])
    }

    #[test]
    fn the_record_is_one_the_under_stores_keep() {
        assert!(PARTS_RECORD.starts_with(fdw_persist::RECORD_HEADER_PREFIX));
    }
}
