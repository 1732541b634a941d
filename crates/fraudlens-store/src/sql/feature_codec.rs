//! The stored form of a feature vector, lossless and compact.
//!
//! A decision's model inputs are kept bit for bit (a later retrain trains on
//! exactly what was scored), but most of them are small counts, zeros or
//! missing: of 60 inputs of the demo model, a quarter are integers, a sixth
//! zero and an eighth NaN. So each value gets a 2-bit tag:
//!
//! | tag | value | payload |
//! |---|---|---|
//! | 0 | `+0.0` | none |
//! | 1 | the canonical NaN (`f64::NAN`) | none |
//! | 2 | an integer of magnitude < 2⁵³ (not `-0.0`) | zigzag LEB128 varint |
//! | 3 | anything else (other NaN payloads too) | 8 bytes, little-endian |
//!
//! Layout: the marker byte [`COMPACT`], the count as a varint, the tags
//! (four per byte, low bits first), the payloads in order, and a zero pad
//! byte when the length would otherwise be a multiple of 8. Rows written
//! before this format hold plain little-endian f64s, whose length *is* a
//! multiple of 8: the length alone tells the two apart, with no migration.
//! The demo model's vectors take ~270 bytes instead of 480.

use crate::{Result, StoreError};

/// The first byte of a compact vector (its format version).
const COMPACT: u8 = 0xC1;

const ZERO: u8 = 0;
const NAN: u8 = 1;
const INT: u8 = 2;
const RAW: u8 = 3;

/// Integers up to this magnitude are exact in an f64.
const EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Encodes `values` (an empty vector encodes to no bytes, as before).
pub(super) fn encode_features(values: &[f64]) -> Vec<u8> {
    if values.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(3 + values.len().div_ceil(4) + values.len() * 9);
    out.push(COMPACT);
    put_varint(&mut out, values.len() as u64);
    let tags_at = out.len();
    out.resize(tags_at + values.len().div_ceil(4), 0);
    for (idx, &value) in values.iter().enumerate() {
        let tag = tag_of(value);
        out[tags_at + idx / 4] |= tag << (2 * (idx % 4));
        match tag {
            INT => put_varint(&mut out, zigzag(value as i64)),
            RAW => out.extend_from_slice(&value.to_le_bytes()),
            _ => {}
        }
    }
    if out.len().is_multiple_of(8) {
        out.push(0);
    }
    out
}

/// Decodes either stored form: compact, or plain f64s (rows written before).
pub(super) fn decode_features(bytes: &[u8]) -> Result<Vec<f64>> {
    if bytes.len().is_multiple_of(8) {
        return Ok(bytes
            .chunks_exact(8)
            .map(|chunk| f64::from_le_bytes(chunk.try_into().unwrap_or_default()))
            .collect());
    }
    decode_compact(bytes).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "a feature vector of {} bytes that is neither compact nor plain f64s",
            bytes.len()
        ))
    })
}

fn decode_compact(bytes: &[u8]) -> Option<Vec<f64>> {
    let (&marker, mut rest) = bytes.split_first()?;
    if marker != COMPACT {
        return None;
    }
    let count = usize::try_from(take_varint(&mut rest)?).ok()?;
    // every value needs at least its 2-bit tag: a huge count in a short blob is corrupt
    let tag_bytes = count.div_ceil(4);
    if tag_bytes > rest.len() {
        return None;
    }
    let (tags, mut payload) = rest.split_at(tag_bytes);
    let mut values = Vec::with_capacity(count);
    for idx in 0..count {
        let value = match (tags[idx / 4] >> (2 * (idx % 4))) & 0b11 {
            ZERO => 0.0,
            NAN => f64::NAN,
            INT => unzigzag(take_varint(&mut payload)?) as f64,
            _ => {
                let (raw, tail) = payload.split_first_chunk::<8>()?;
                payload = tail;
                f64::from_le_bytes(*raw)
            }
        };
        values.push(value);
    }
    // nothing after the payloads but the pad byte where the length needed it
    match payload {
        [] => Some(values),
        [0] if (bytes.len() - 1).is_multiple_of(8) => Some(values),
        _ => None,
    }
}

fn tag_of(value: f64) -> u8 {
    if value.to_bits() == 0 {
        ZERO
    } else if value.to_bits() == f64::NAN.to_bits() {
        NAN
    } else if value.abs() < EXACT_INT && (value as i64 as f64).to_bits() == value.to_bits() {
        // (an integer converts back to the same bits; -0.0 comes back as +0.0)
        INT
    } else {
        RAW
    }
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A LEB128 varint of at most 10 bytes from the front of `bytes`.
fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for (idx, &byte) in bytes.iter().enumerate().take(10) {
        n |= u64::from(byte & 0x7f) << (7 * idx);
        if byte & 0x80 == 0 {
            *bytes = &bytes[idx + 1..];
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }

    #[test]
    fn every_kind_of_value_comes_back_bit_for_bit() {
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff8_0000_0000_0001),
            1.0,
            -1.0,
            3.0,
            123_456_789.0,
            -9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            5e-324,
            53.256_666_666_666_67,
            0.1,
        ];
        for len in 0..=values.len() {
            let bytes = encode_features(&values[..len]);
            assert!(
                len == 0 || !bytes.len().is_multiple_of(8),
                "{len}: {} bytes",
                bytes.len()
            );
            assert!(same(&decode_features(&bytes).unwrap(), &values[..len]), "{len}");
        }
    }

    #[test]
    fn rows_written_before_as_plain_f64s_still_decode() {
        let values = [1.5, f64::NAN, 0.0, 7.0];
        let plain: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
        assert!(same(&decode_features(&plain).unwrap(), &values));
    }

    #[test]
    fn typical_vectors_take_about_half_the_bytes() {
        // the demo model's mix: counts, zeros, missing, and means
        let values: Vec<f64> = (0..60)
            .map(|idx| match idx % 8 {
                0 | 1 => f64::from(idx),
                2 => 0.0,
                3 => f64::NAN,
                _ => 1.0 / f64::from(idx + 3),
            })
            .collect();
        let bytes = encode_features(&values);
        assert!(bytes.len() < 300, "{}", bytes.len());
        assert!(same(&decode_features(&bytes).unwrap(), &values));
    }

    #[test]
    fn truncated_padded_or_foreign_blobs_are_refused() {
        let bytes = encode_features(&[1.5, 2.0, f64::NAN, 0.25]);
        for cut in 1..bytes.len() {
            if !cut.is_multiple_of(8) {
                assert!(decode_features(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
        let mut extra = bytes.clone();
        extra.push(7);
        if !extra.len().is_multiple_of(8) {
            assert!(decode_features(&extra).is_err());
        }
        // a huge count in a short blob
        assert!(decode_features(&[COMPACT, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode_features(&[0x00, 1, 0]).is_err());
    }

    #[test]
    fn random_vectors_round_trip() {
        // a deterministic xorshift over raw bit patterns and small integers
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let len = (next() % 80) as usize;
            let values: Vec<f64> = (0..len)
                .map(|_| match next() % 4 {
                    0 => f64::from_bits(next()),
                    1 => (next() % 10_000) as f64 - 5_000.0,
                    2 => 0.0,
                    _ => f64::NAN,
                })
                .collect();
            let bytes = encode_features(&values);
            assert!(same(&decode_features(&bytes).unwrap(), &values));
        }
    }
}
