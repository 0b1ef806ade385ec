//! An object's metadata: the HTTP headers it was written with and is served with
//! (`Content-Type`, `Cache-Control`, `x-amz-meta-*`, ...). fdw stores and returns them as
//! given; it interprets none.

use super::WireError;

/// Most bytes of one object's metadata (names and values). S3 allows 2 KiB of user
/// metadata beside the standard headers; this holds both, and keeps the largest compose
/// header under [`MAX_HEADER_BYTES`](super::MAX_HEADER_BYTES) (a wire test checks).
pub const MAX_METADATA_BYTES: usize = 3072;

/// User metadata under this prefix is fdw's own record in an S3 under-store
/// (`x-amz-meta-fdw-version`, `x-amz-meta-fdw-etag`), never an object's header.
pub const RESERVED_HEADER_PREFIX: &str = "x-amz-meta-fdw-";

/// Header names and values, sorted by name, each name once. Names are lowercase HTTP
/// tokens, values UTF-8 without control characters but tab: every value can be sent
/// back as the header it came as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Metadata(Vec<(String, String)>);

impl Metadata {
    /// No metadata.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Checks and sorts `entries`; the error names the entry and the rule it broke.
    pub fn new(mut entries: Vec<(String, String)>) -> Result<Self, WireError> {
        let invalid = |why: String| Err(WireError::InvalidMetadata(why));
        let bytes: usize = entries.iter().map(|(n, v)| n.len() + v.len()).sum();
        if bytes > MAX_METADATA_BYTES {
            return invalid(format!(
                "{bytes} bytes is over the limit of {MAX_METADATA_BYTES} (MAX_METADATA_BYTES)"
            ));
        }
        for (name, value) in &entries {
            let token = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return invalid(format!("name {name:?} is not a lowercase HTTP header name"));
            }
            if name.starts_with(RESERVED_HEADER_PREFIX) {
                return invalid(format!(
                    "{name}: names starting {RESERVED_HEADER_PREFIX} are fdw's own records"
                ));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return invalid(format!("value of {name} has a control character"));
            }
        }
        entries.sort();
        if let Some(pair) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return invalid(format!("{} is given twice", pair[0].0));
        }
        Ok(Self(entries))
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|at| self.0[at].1.as_str())
    }

    /// Every name and value, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes of names and values.
    pub fn bytes(&self) -> usize {
        self.0.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    pub(super) fn raw(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.0
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    pub(super) fn from_raw(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Self, WireError> {
        let text = |bytes: Vec<u8>| {
            String::from_utf8(bytes).map_err(|_| WireError::InvalidUtf8 { field: "metadata" })
        };
        let entries = raw
            .into_iter()
            .map(|(n, v)| Ok((text(n)?, text(v)?)))
            .collect::<Result<Vec<_>, WireError>>()?;
        Self::new(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: &str, v: &str) -> (String, String) {
        (n.to_owned(), v.to_owned())
    }

    #[test]
    fn sorted_looked_up_and_checked() {
        let meta = Metadata::new(vec![
            entry("x-amz-meta-b", "2"),
            entry("content-type", "text/csv"),
            entry("x-amz-meta-a", "é ü"),
        ])
        .unwrap();
        assert_eq!(meta.get("content-type"), Some("text/csv"));
        assert_eq!(meta.get("x-amz-meta-a"), Some("é ü"));
        assert_eq!(meta.get("missing"), None);
        let names: Vec<&str> = meta.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["content-type", "x-amz-meta-a", "x-amz-meta-b"]);
        let round = Metadata::from_raw(meta.raw()).unwrap();
        assert_eq!(round, meta);
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        for (bad, why) in [
            (vec![entry("Content-Type", "x")], "lowercase"),
            (vec![entry("a b", "x")], "lowercase"),
            (vec![entry("", "x")], "lowercase"),
            (vec![entry("x-amz-meta-a", "line\nbreak")], "control"),
            (vec![entry("a", "1"), entry("a", "2")], "twice"),
            (
                vec![entry("x-amz-meta-fdw-version", "9")],
                "fdw's own records",
            ),
            (
                vec![entry("a", &"v".repeat(MAX_METADATA_BYTES))],
                "MAX_METADATA_BYTES",
            ),
        ] {
            let err = Metadata::new(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
