//! The sizes of a composed object's parts, as text that travels with its metadata: runs
//! of equal sizes, `5242880*3,1048576` for three parts of 5 MiB and a last of 1 MiB. An
//! upload cut into equal parts, as every SDK cuts them, is two runs whatever its count.
//! The text comes back from under-stores, so [`PartSizes::decode`] validates it whole.

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
}
