//! Under-store locations as users write them: `s3://bucket/prefix` or `file:///dir`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a bucket's objects are persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnderStoreLocation {
    /// An S3 (or S3-compatible) bucket, with an optional key prefix (no leading or
    /// trailing `/`).
    S3 {
        /// The S3 bucket.
        bucket: String,
        /// Prefix prepended to every key, empty for none.
        prefix: String,
    },
    /// A local directory, the embedded default.
    LocalDir(PathBuf),
}

/// Why an under-store location was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Neither `s3://` nor `file://`.
    #[error("under-store location {0:?} must start with s3:// or file://")]
    UnknownScheme(String),
    /// `s3://` without a bucket.
    #[error("under-store location {0:?} names no S3 bucket")]
    MissingBucket(String),
    /// `file://` with a relative path: the daemon's working directory is no place to
    /// depend on.
    #[error("under-store location {0:?} must be an absolute path (file:///dir)")]
    RelativePath(String),
}

impl FromStr for UnderStoreLocation {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LocationError::MissingBucket(s.to_owned()));
            }
            let prefix = prefix.trim_matches('/').to_owned();
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix,
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(LocationError::RelativePath(s.to_owned()));
            }
            return Ok(Self::LocalDir(PathBuf::from(path)));
        }
        Err(LocationError::UnknownScheme(s.to_owned()))
    }
}

impl fmt::Display for UnderStoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Self::LocalDir(path) => write!(f, "file://{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_schemes() {
        for text in ["s3://data", "s3://data/stage/one", "file:///var/lib/fdw"] {
            let loc: UnderStoreLocation = text.parse().unwrap();
            assert_eq!(loc.to_string(), text);
        }
        assert_eq!(
            "s3://data//a/b/".parse(),
            Ok(UnderStoreLocation::S3 {
                bucket: "data".into(),
                prefix: "a/b".into()
            })
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(matches!(
            "gs://x".parse::<UnderStoreLocation>(),
            Err(LocationError::UnknownScheme(_))
        ));
        assert!(matches!(
            "s3:///p".parse::<UnderStoreLocation>(),
            Err(LocationError::MissingBucket(_))
        ));
        assert!(matches!(
            "file://rel".parse::<UnderStoreLocation>(),
            Err(LocationError::RelativePath(_))
        ));
    }
}
