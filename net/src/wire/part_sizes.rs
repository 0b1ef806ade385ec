//! A composed object's parts as text that travels with its metadata: their sizes as runs
//! of equal sizes ([`PartSizes`]: `5242880*3,1048576` for three parts of 5 MiB and a last
//! of 1 MiB; an upload cut into equal parts, as every SDK cuts them, is two runs whatever
//! its count), and their checksums ([`PartChecksums`]: `SHA256:<base64>,<base64>`). The
//! text comes back from under-stores, so each decoder validates it whole.

/// The longest text kept (about 40 runs of different sizes): it shares the object's
/// metadata limit with its headers.
pub const MAX_PART_SIZES_BYTES: usize = 512;
/// Most parts an object has (S3's limit).
const MAX_PARTS: usize = 10_000;

/// The codec of part sizes.
pub struct PartSizes;

impl PartSizes {
    /// The text of parts of `sizes`, if there are at most 10,000 and it is at most
    /// [`MAX_PART_SIZES_BYTES`].
    pub fn encode(sizes: &[u64]) -> Option<String> {
        if sizes.is_empty() || sizes.len() > MAX_PARTS {
            return None;
        }
        let mut runs: Vec<(u64, usize)> = Vec::new();
        for &size in sizes {
            match runs.last_mut() {
                Some((last, count)) if *last == size => *count += 1,
                _ => runs.push((size, 1)),
            }
        }
        let text = runs
            .iter()
            .map(|(size, count)| match count {
                1 => size.to_string(),
                n => format!("{size}*{n}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        (text.len() <= MAX_PART_SIZES_BYTES).then_some(text)
    }

    /// The sizes `text` names; `None` unless it is text [`encode`](Self::encode) makes
    /// (at most 10,000 parts, no empty run, no total past `u64`).
    pub fn decode(text: &str) -> Option<Vec<u64>> {
        if text.len() > MAX_PART_SIZES_BYTES {
            return None;
        }
        let mut sizes = Vec::new();
        let mut total: u64 = 0;
        for run in text.split(',') {
            let (size, count): (u64, usize) = match run.split_once('*') {
                Some((size, count)) => (size.parse().ok()?, count.parse().ok()?),
                None => (run.parse().ok()?, 1),
            };
            if count == 0 || sizes.len() + count > MAX_PARTS {
                return None;
            }
            total = total.checked_add(size.checked_mul(count as u64)?)?;
            sizes.extend(std::iter::repeat_n(size, count));
        }
        Some(sizes)
    }
}

/// The checksums of a composed object's parts, of one algorithm, in part order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartChecksums {
    /// S3's name of the algorithm: `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256`.
    pub algorithm: String,
    /// Each part's checksum, base64 of its big-endian bytes, as S3 writes it.
    pub values: Vec<String>,
}

/// Each algorithm a part's checksum may have, and the length of its base64.
const PART_CHECKSUM_LENGTHS: [(&str, usize); 5] = [
    ("CRC32", 8),
    ("CRC32C", 8),
    ("CRC64NVME", 12),
    ("SHA1", 28),
    ("SHA256", 44),
];

impl PartChecksums {
    /// Whether `value` could be a checksum of `algorithm`.
    fn valid(algorithm: &str, value: &str) -> bool {
        let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=".contains(c);
        PART_CHECKSUM_LENGTHS
            .iter()
            .any(|(name, len)| *name == algorithm && value.len() == *len)
            && value.chars().all(base64)
    }

    /// The text, if every value is one of `algorithm`, there are 1 to 10,000, and it is
    /// at most [`MAX_PART_SIZES_BYTES`].
    pub fn encode(&self) -> Option<String> {
        let fits = !self.values.is_empty()
            && self.values.len() <= MAX_PARTS
            && self.values.iter().all(|v| Self::valid(&self.algorithm, v));
        let text = format!("{}:{}", self.algorithm, self.values.join(","));
        (fits && text.len() <= MAX_PART_SIZES_BYTES).then_some(text)
    }

    /// The checksums `text` names; `None` unless it is text [`encode`](Self::encode) makes.
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > MAX_PART_SIZES_BYTES {
            return None;
        }
        let (algorithm, values) = text.split_once(':')?;
        let values: Vec<String> = values.split(',').map(str::to_owned).collect();
        let checksums = Self {
            algorithm: algorithm.to_owned(),
            values,
        };
        checksums.encode().is_some().then_some(checksums)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_parts_are_one_run_and_the_text_round_trips() {
        let mib = 1 << 20;
        assert_eq!(PartSizes::encode(&[5 * mib; 3]).unwrap(), "5242880*3");
        let sizes = [5 * mib, 5 * mib, mib];
        let text = PartSizes::encode(&sizes).unwrap();
        assert_eq!(text, "5242880*2,1048576");
        assert_eq!(PartSizes::decode(&text).unwrap(), sizes);
        assert_eq!(
            PartSizes::encode(&[5 * mib; 10_000]).unwrap(),
            "5242880*10000"
        );
        assert_eq!(PartSizes::decode("7*2,3"), Some(vec![7, 7, 3]));
    }

    #[test]
    fn too_long_or_malformed_texts_are_none() {
        let distinct: Vec<u64> = (0..200).map(|n| 5_000_000 + n).collect();
        assert_eq!(PartSizes::encode(&distinct), None);
        assert_eq!(PartSizes::encode(&[]), None);
        assert_eq!(PartSizes::encode(&[1; 10_001]), None);
        let past_u64 = format!("{}*2", u64::MAX);
        for bad in [
            "", "5*0", "x", "5*", "*3", "5*10001", "1,2,", "-1", &past_u64,
        ] {
            assert_eq!(PartSizes::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn part_checksums_round_trip_and_bad_ones_are_none() {
        let checksums = PartChecksums {
            algorithm: "SHA256".into(),
            values: vec!["arcu6553sHVAiX4MjW0j7I7vD4w6R+Gz9Ok0Q9lTa+0=".into(); 3],
        };
        let text = checksums.encode().unwrap();
        assert!(text.starts_with("SHA256:arcu"));
        assert_eq!(PartChecksums::decode(&text), Some(checksums));
        assert!(PartChecksums::decode("CRC32:AAAAAA==,BBBBBB==").is_some());
        for bad in [
            "",
            "SHA256",
            "SHA256:",
            "MD5:AAAAAA==",
            "CRC32:AAAAAA",
            "CRC32:AAAAAA==,",
            "CRC32:AAAA\u{e9}A==",
            "CRC32:AAAAAA==:BBBBBB==",
        ] {
            assert_eq!(PartChecksums::decode(bad), None, "{bad}");
        }
        let many = PartChecksums {
            algorithm: "CRC32".into(),
            values: vec!["AAAAAA==".into(); 100],
        };
        assert_eq!(many.encode(), None, "over MAX_PART_SIZES_BYTES");
    }
}
