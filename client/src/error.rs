//! The SDK's one error type: its kind says what to do, its message what happened.

use std::fmt;

pub use fdw_net::wire::ErrorKind;

/// A failed call. [`Error::kind`] tells the caller what to do about it (SlateDB's RFC-0007
/// shape); the message says what happened, naming the object and the limit or node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// What to do: retry later (`Unavailable`, `ClusterFull`), fix the input
    /// (`InvalidInput`), accept absence (`NotFound`), alert (`DataCorruption`, `Internal`,
    /// `Lost`: every member holding an acknowledged version failed before it was
    /// persisted).
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether the same call may succeed later unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::ClusterFull)
    }

    /// What happened.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A deleted key is, to callers, a key not found.
    pub(crate) fn deleted_as_not_found(self) -> Self {
        match self.kind {
            ErrorKind::Deleted => Self {
                kind: ErrorKind::NotFound,
                ..self
            },
            _ => self,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<fdw_net::NameError> for Error {
    fn from(err: fdw_net::NameError) -> Self {
        Error::new(ErrorKind::InvalidInput, err.to_string())
    }
}

impl From<fdw_net::wire::WireError> for Error {
    fn from(err: fdw_net::wire::WireError) -> Self {
        Error::new(ErrorKind::InvalidInput, err.to_string())
    }
}
