//! An object's MD5, as S3's ETag gives it: of the object's bytes, or, for an object
//! composed of parts (a multipart upload), the MD5 of the parts' MD5s with their count
//! (`<hex>-<N>`). The writer computes it as the bytes stream out and sends it in the
//! put's trailer, after the last data frame; every replica stores it beside the CRC.

use md5::Digest as _;

use super::{MAX_PART_NUMBER, WireError};

/// Bytes of a put's trailer: the MD5, the part count, two reserved zero bytes and the
/// CRC32 of those 20 bytes.
pub const TRAILER_BYTES: usize = 24;

/// An object's MD5 and, for a composed object, its number of parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Digest {
    md5: [u8; 16],
    parts: u16,
}

impl Digest {
    /// The digest of an object whose bytes have this MD5.
    pub fn of_md5(md5: [u8; 16]) -> Self {
        Self { md5, parts: 0 }
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        let mut hasher = Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest of an object made of parts with these digests, in order, as S3 gives
    /// a multipart upload's: the MD5 of the parts' MD5s, and their count.
    pub fn of_parts(parts: impl IntoIterator<Item = Digest>) -> Self {
        let mut md5 = md5::Md5::new();
        let mut count = 0u16;
        for part in parts {
            md5.update(part.md5);
            count = count.saturating_add(1);
        }
        Self {
            md5: md5.finalize().into(),
            parts: count.max(1),
        }
    }

    /// The MD5: of the bytes, or of the parts' MD5s.
    pub fn md5(&self) -> [u8; 16] {
        self.md5
    }

    /// Parts it was composed of; 0 for an object written whole.
    pub fn parts(&self) -> u16 {
        self.parts
    }

    /// The ETag's value without its quotes: the MD5 in hex, then `-N` for N parts.
    pub fn etag(&self) -> String {
        use std::fmt::Write;
        let mut tag = String::with_capacity(38);
        for byte in self.md5 {
            let _ = write!(tag, "{byte:02x}");
        }
        if self.parts > 0 {
            let _ = write!(tag, "-{}", self.parts);
        }
        tag
    }

    /// The digest an ETag value of [`etag`](Self::etag) names, if it is one.
    pub fn from_etag(tag: &str) -> Option<Self> {
        let (hex, parts) = match tag.split_once('-') {
            Some((hex, n)) if !n.starts_with('+') => (hex, n.parse().ok().filter(|&n| n > 0)?),
            Some(_) => return None,
            None => (tag, 0),
        };
        if hex.len() != 32 || parts > MAX_PART_NUMBER {
            return None;
        }
        let mut md5 = [0u8; 16];
        for (i, byte) in md5.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self { md5, parts })
    }

    /// The trailer a put ends with.
    pub fn encode_trailer(&self) -> [u8; TRAILER_BYTES] {
        let mut out = [0u8; TRAILER_BYTES];
        out[..16].copy_from_slice(&self.md5);
        out[16..18].copy_from_slice(&self.parts.to_le_bytes());
        let crc = crc32fast::hash(&out[..20]);
        out[20..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a put's trailer, checking its CRC, the reserved bytes and the part count.
    pub fn decode_trailer(bytes: &[u8; TRAILER_BYTES]) -> Result<Self, WireError> {
        let invalid = |why: &str| Err(WireError::Malformed(format!("put trailer: {why}")));
        let crc = u32::from_le_bytes(bytes[20..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..20]) != crc {
            return invalid("its CRC does not match");
        }
        if bytes[18..20] != [0, 0] {
            return invalid("reserved bytes are not zero");
        }
        Self::from_raw((
            bytes[..16].try_into().expect("16 bytes"),
            u16::from_le_bytes(bytes[16..18].try_into().expect("2 bytes")),
        ))
    }

    pub(super) fn raw(&self) -> ([u8; 16], u16) {
        (self.md5, self.parts)
    }

    pub(super) fn from_raw((md5, parts): ([u8; 16], u16)) -> Result<Self, WireError> {
        if parts > MAX_PART_NUMBER {
            return Err(WireError::Malformed(format!(
                "a digest of {parts} parts: over MAX_PART_NUMBER ({MAX_PART_NUMBER})"
            )));
        }
        Ok(Self { md5, parts })
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.etag())
    }
}

/// An MD5 computed as bytes stream past.
#[derive(Clone, Default)]
pub struct Hasher(md5::Md5);

impl Hasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes `bytes` next.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of everything hashed.
    pub fn finish(self) -> Digest {
        Digest::of_md5(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_s3s() {
        // S3's ETag of "bar", and of an empty object.
        assert_eq!(
            Digest::of_bytes(b"bar").etag(),
            "37b51d194a7513e45b56f6524f2d51f2"
        );
        assert_eq!(
            Digest::of_bytes(b"").etag(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        // A multipart upload's: the MD5 of the parts' binary MD5s, and their count.
        let parts = [Digest::of_bytes(b"a"), Digest::of_bytes(b"b")];
        let mut joined = Vec::new();
        parts
            .iter()
            .for_each(|p| joined.extend_from_slice(&p.md5()));
        let composed = Digest::of_parts(parts);
        assert_eq!(
            composed.etag(),
            format!("{}-2", Digest::of_bytes(&joined).etag())
        );
        let mut streamed = Hasher::new();
        streamed.update(b"b");
        streamed.update(b"ar");
        assert_eq!(streamed.finish(), Digest::of_bytes(b"bar"));
    }

    #[test]
    fn etags_parse_back_and_junk_does_not() {
        for digest in [
            Digest::of_bytes(b"x"),
            Digest::of_parts([Digest::of_bytes(b"x"); 3]),
        ] {
            assert_eq!(Digest::from_etag(&digest.etag()), Some(digest));
        }
        for junk in [
            "",
            "00066205daee8a3e",
            "37b51d194a7513e45b56f6524f2d51f",
            "37b51d194a7513e45b56f6524f2d51fg",
            "37b51d194a7513e45b56f6524f2d51f2-0",
            "37b51d194a7513e45b56f6524f2d51f2-+1",
            "37b51d194a7513e45b56f6524f2d51f2-10001",
            "37b51d194a7513e45b56f6524f2d51f2-x",
            "é7b51d194a7513e45b56f6524f2d51f2",
        ] {
            assert_eq!(Digest::from_etag(junk), None, "{junk}");
        }
    }

    #[test]
    fn trailers_round_trip_and_damage_is_refused() {
        let digest = Digest::of_parts([Digest::of_bytes(b"x"); 7]);
        let trailer = digest.encode_trailer();
        assert_eq!(Digest::decode_trailer(&trailer), Ok(digest));
        for at in [0, 16, 18, 20] {
            let mut bad = trailer;
            bad[at] ^= 1;
            assert!(Digest::decode_trailer(&bad).is_err(), "byte {at}");
        }
        // A well-formed trailer with too many parts.
        let mut many = [0u8; TRAILER_BYTES];
        many[16..18].copy_from_slice(&(MAX_PART_NUMBER + 1).to_le_bytes());
        let crc = crc32fast::hash(&many[..20]);
        many[20..].copy_from_slice(&crc.to_le_bytes());
        assert!(Digest::decode_trailer(&many).is_err());
    }
}
