//! Bucket names, object keys and versions, validated at the edge.

use std::fmt;

/// Longest object key, in bytes of UTF-8: S3's limit, so every fdw key is a valid S3 key.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest bucket name, in bytes: S3's limit.
pub const MAX_BUCKET_NAME_BYTES: usize = 63;
const MIN_BUCKET_NAME_BYTES: usize = 3;

/// Why a bucket name or key was refused. Each variant names the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The key is empty.
    #[error("object key is empty")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("object key is {len} bytes, over the limit of {MAX_KEY_BYTES} bytes (MAX_KEY_BYTES)")]
    KeyTooLong {
        /// Length of the refused key in bytes.
        len: usize,
    },
    /// The key contains a NUL or another control character, which S3 tooling mangles.
    #[error("object key contains control character {0:?} at byte {1}")]
    KeyControlCharacter(char, usize),
    /// The bucket name is shorter or longer than S3 allows.
    #[error(
        "bucket name {name:?} is {len} bytes; it must be {MIN_BUCKET_NAME_BYTES} to {MAX_BUCKET_NAME_BYTES} bytes"
    )]
    BucketNameLength {
        /// The refused name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The bucket name has a character S3 does not allow, or starts or ends badly.
    #[error(
        "bucket name {name:?} must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, with no '..', '.-' or '-.', and not an IP address"
    )]
    BucketNameCharacters {
        /// The refused name.
        name: String,
    },
}

/// A bucket name that follows S3's naming rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketName(String);

impl BucketName {
    /// Validates `name` against S3's bucket naming rules.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let len = name.len();
        if !(MIN_BUCKET_NAME_BYTES..=MAX_BUCKET_NAME_BYTES).contains(&len) {
            return Err(NameError::BucketNameLength { name, len });
        }
        let allowed =
            |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.';
        let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let bytes = name.as_bytes();
        let well_formed = bytes.iter().all(|&c| allowed(c))
            && bytes.first().is_some_and(|&c| edge(c))
            && bytes.last().is_some_and(|&c| edge(c))
            // Labels of a DNS name: none empty, none starting or ending with '-'.
            && !["..", ".-", "-."].iter().any(|bad| name.contains(bad))
            && name.parse::<std::net::Ipv4Addr>().is_err();
        if !well_formed {
            return Err(NameError::BucketNameCharacters { name });
        }
        Ok(Self(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object key: non-empty UTF-8 of at most [`MAX_KEY_BYTES`] bytes, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Validates `key`. Invalid UTF-8 cannot reach this point: decoders of network bytes
    /// turn bytes into `str` first and report that error themselves.
    pub fn new(key: impl Into<String>) -> Result<Self, NameError> {
        let key = key.into();
        if key.is_empty() {
            return Err(NameError::EmptyKey);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(NameError::KeyTooLong { len: key.len() });
        }
        if let Some((at, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
            return Err(NameError::KeyControlCharacter(c, at));
        }
        Ok(Self(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keys compare, hash and order exactly as their strings do, so maps keyed by
/// `ObjectKey` can be searched by `&str` (prefix listing).
impl std::borrow::Borrow<str> for ObjectKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The version of an object under one key. Versions of a key are totally ordered;
/// the newest committed one is what readers see. The key's primary assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keys_follow_the_limits() {
        assert_eq!(ObjectKey::new(""), Err(NameError::EmptyKey));
        assert!(ObjectKey::new("a".repeat(MAX_KEY_BYTES)).is_ok());
        assert_eq!(
            ObjectKey::new("a".repeat(MAX_KEY_BYTES + 1)),
            Err(NameError::KeyTooLong {
                len: MAX_KEY_BYTES + 1
            })
        );
        assert_eq!(
            ObjectKey::new("a\0b"),
            Err(NameError::KeyControlCharacter('\0', 1))
        );
        assert!(ObjectKey::new("dir/sub dir/ünïcode.parquet").is_ok());
        let err = ObjectKey::new("x".repeat(2000)).unwrap_err().to_string();
        assert!(
            err.contains("MAX_KEY_BYTES"),
            "the error names the limit: {err}"
        );
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for good in [
            "abc",
            "my-bucket.v2",
            "0data",
            "1.2.3",
            "fdw.buckets",
            &"a".repeat(63),
        ] {
            assert!(BucketName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Upper",
            "-start",
            "end-",
            "under_score",
            "sp ace",
            "foo..bar",
            "foo.-bar",
            "foo-.bar",
            "192.168.5.123",
            &"a".repeat(64),
        ] {
            assert!(BucketName::new(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_valid_key_round_trips(key in "[^\\p{Cc}]{1,200}") {
            prop_assume!(key.len() <= MAX_KEY_BYTES);
            let parsed = ObjectKey::new(key.clone()).unwrap();
            prop_assert_eq!(parsed.as_str(), key.as_str());
        }
    }
}
