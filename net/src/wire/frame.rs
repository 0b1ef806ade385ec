//! Data frames: `| len u32 LE | crc32 u32 LE | len bytes |`.

use super::{MAX_FRAME_BYTES, WireError};

/// Bytes before a frame's data.
pub const FRAME_HEADER_BYTES: usize = 8;

/// The CRC32 of consecutive pieces, from each one's CRC and length: crc(a‖b) from
/// crc(a), crc(b) and len(b), so no byte is hashed again.
pub fn combined_crc(pieces: impl IntoIterator<Item = (u32, u64)>) -> u32 {
    let mut whole = crc32fast::Hasher::new();
    for (crc, len) in pieces {
        whole.combine(&crc32fast::Hasher::new_with_initial_len(crc, len));
    }
    whole.finalize()
}

/// The CRC32 of every `frame_bytes` frame of `data` and of the whole, each byte hashed
/// once.
pub fn frame_crcs(data: &[u8], frame_bytes: usize) -> (Vec<u32>, u32) {
    let crcs: Vec<u32> = data.chunks(frame_bytes).map(crc32fast::hash).collect();
    let lens = data.chunks(frame_bytes).map(|frame| frame.len() as u64);
    let whole = combined_crc(crcs.iter().copied().zip(lens));
    (crcs, whole)
}

/// The fixed part of a data frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Data bytes that follow.
    pub len: u32,
    /// CRC32 of those bytes, computed by the client.
    pub crc: u32,
}

impl FrameHeader {
    /// The frame header for `data`.
    pub fn for_data(data: &[u8]) -> Self {
        Self {
            len: data.len() as u32,
            crc: crc32fast::hash(data),
        }
    }

    /// Encodes the header.
    pub fn encode(self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0; FRAME_HEADER_BYTES];
        out[..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..].copy_from_slice(&self.crc.to_le_bytes());
        out
    }

    /// Decodes frame `index` of an object of `object_len` bytes sent in frames of
    /// `frame_bytes`, checking its length is the one that position must have: every
    /// frame full but the last, so frames line up with pool chunks.
    pub fn decode(
        bytes: &[u8; FRAME_HEADER_BYTES],
        index: u64,
        object_len: u64,
        frame_bytes: u32,
    ) -> Result<Self, WireError> {
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[4..].try_into().expect("4 bytes"));
        let expected = expected_frame_len(index, object_len, frame_bytes)?;
        if len != expected {
            return Err(WireError::FrameLength {
                index,
                len,
                expected,
            });
        }
        Ok(Self { len, crc })
    }
}

/// The length frame `index` must have, or an error if there is no such frame.
fn expected_frame_len(index: u64, object_len: u64, frame_bytes: u32) -> Result<u32, WireError> {
    if frame_bytes == 0 || frame_bytes > MAX_FRAME_BYTES {
        return Err(WireError::InvalidFrameSize(frame_bytes));
    }
    let start = index.saturating_mul(u64::from(frame_bytes));
    if start >= object_len {
        return Err(WireError::FrameLength {
            index,
            len: 0,
            expected: 0,
        });
    }
    Ok((object_len - start).min(u64::from(frame_bytes)) as u32)
}

/// Number of frames an object of `object_len` bytes is sent in.
pub fn frame_count(object_len: u64, frame_bytes: u32) -> u64 {
    object_len.div_ceil(u64::from(frame_bytes.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_must_line_up_with_chunks() {
        let header = FrameHeader { len: 4096, crc: 7 }.encode();
        assert_eq!(
            FrameHeader::decode(&header, 0, 10_000, 4096).unwrap().crc,
            7
        );
        // The last frame carries the remainder.
        let last = FrameHeader {
            len: 10_000 - 8192,
            crc: 1,
        }
        .encode();
        assert!(FrameHeader::decode(&last, 2, 10_000, 4096).is_ok());
        // A short frame in the middle, a frame past the end, a zero frame size.
        let err = FrameHeader::decode(&last, 1, 10_000, 4096).unwrap_err();
        assert_eq!(
            err,
            WireError::FrameLength {
                index: 1,
                len: 1808,
                expected: 4096
            }
        );
        assert!(FrameHeader::decode(&header, 3, 10_000, 4096).is_err());
        assert!(matches!(
            FrameHeader::decode(&header, 0, 10, 0),
            Err(WireError::InvalidFrameSize(0))
        ));
        assert_eq!(frame_count(0, 4096), 0);
        assert_eq!(frame_count(8193, 4096), 3);
    }
}
