//! Write types, in Alluxio's vocabulary, which pipeline users already know.

use std::fmt;
use std::str::FromStr;

/// How a write is made durable, and when it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WriteType {
    /// Memory only: never persisted. The object stays pinned until it is deleted.
    MustCache,
    /// The fast durable write: acknowledged once W replicas hold it in memory,
    /// persisted in the background.
    #[default]
    AsyncThrough,
    /// Acknowledged only after the under-store has it too.
    CacheThrough,
    /// Written through to the under-store, acknowledged once it is there; the memory
    /// copy is a cache entry from the start (evictable as soon as it is persisted).
    Through,
}

impl WriteType {
    /// Every write type, in declaration order.
    pub const ALL: [WriteType; 4] = [
        WriteType::MustCache,
        WriteType::AsyncThrough,
        WriteType::CacheThrough,
        WriteType::Through,
    ];

    /// The name users write in configs, headers and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteType::MustCache => "MUST_CACHE",
            WriteType::AsyncThrough => "ASYNC_THROUGH",
            WriteType::CacheThrough => "CACHE_THROUGH",
            WriteType::Through => "THROUGH",
        }
    }

    /// Whether objects written this way go to the under-store at all.
    pub fn persists(self) -> bool {
        self != WriteType::MustCache
    }

    /// Whether the write is acknowledged only once the under-store has it.
    pub fn acks_after_persist(self) -> bool {
        matches!(self, WriteType::CacheThrough | WriteType::Through)
    }
}

impl fmt::Display for WriteType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A write type name that is not one of [`WriteType::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown write type {0:?}: expected MUST_CACHE, ASYNC_THROUGH, CACHE_THROUGH or THROUGH")]
pub struct UnknownWriteType(pub String);

impl FromStr for WriteType {
    type Err = UnknownWriteType;

    /// Accepts the canonical names case-insensitively, with `-` for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let canonical = s.trim().to_ascii_uppercase().replace('-', "_");
        WriteType::ALL
            .into_iter()
            .find(|t| t.as_str() == canonical)
            .ok_or_else(|| UnknownWriteType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in WriteType::ALL {
            assert_eq!(t.as_str().parse::<WriteType>(), Ok(t));
        }
        assert_eq!("async-through".parse(), Ok(WriteType::AsyncThrough));
        assert!("SOMETIMES".parse::<WriteType>().is_err());
        assert_eq!(WriteType::default(), WriteType::AsyncThrough);
        assert!(!WriteType::MustCache.persists());
    }
}
