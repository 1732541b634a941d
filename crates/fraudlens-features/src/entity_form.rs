//! One entity's stored form, for a shared state that keeps each entity
//! apart ([`crate::FeatureEngine::export_entity`]). A batch writes back
//! every entity it touched, so this runs once per entity per batch, and
//! Redis holds, copies and sends every byte of it. Format 2, written by hand
//! into one buffer sized up front: LEB128 varints (signed ones zigzagged),
//! event times as the difference from the previous event, and the hashes —
//! random, so a varint would only lengthen them — as 8 bytes little-endian.
//! About a quarter smaller than the snapshot's serde varint form (format 1,
//! still read) and several times faster to write.
//!
//! ```text
//! 2u8 | first_seq | events | others
//!     | events: (time − previous time, amount, tagged hash: 8 bytes)… | others: 8 bytes…
//!     | windows | (start, count, sum, sum_sq)…
//!     | max | (seq, amount)…
//!     | distinct | (start, counts, (key: 8 bytes, count)…)…
//!     | risk | (start, end, count, frauds)…
//! ```
//!
//! Decoding checks every count against the bytes left before allocating,
//! refuses varints too long for their type and trailing bytes, and hands the result to the
//! same consistency checks as a snapshot's entities.

use crate::engine::{EntityState, Event, RiskAgg, WindowAgg};
use crate::snapshot::{SnapshotError, StoredState, sorted_distinct};

/// Format byte of this form.
pub(crate) const FORMAT: u8 = 2;

/// The fewest bytes an event takes (two one-byte varints and its hash).
const MIN_EVENT: usize = 10;

fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_u128(out: &mut Vec<u8>, mut value: u128) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    put_u64(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_i128(out: &mut Vec<u8>, value: i128) {
    put_u128(out, ((value << 1) ^ (value >> 127)) as u128);
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u64(out, n as u64);
}

/// The stored form of one entity's state.
pub(crate) fn encode(state: &EntityState) -> Vec<u8> {
    let distinct = sorted_distinct(state);
    // the longest varints: 10 bytes for 64 bits, 19 for 128
    let size = 1
        + 30
        + state.events.len() * 28
        + state.others.len() * 8
        + 10
        + state.windows.len() * 58
        + 10
        + state.max.len() * 20
        + 10
        + distinct.iter().map(|(_, counts)| 20 + counts.len() * 18).sum::<usize>()
        + 10
        + state.risk.len() * 40;
    let mut out = Vec::with_capacity(size);
    out.push(FORMAT);
    put_u64(&mut out, state.first_seq);
    put_len(&mut out, state.events.len());
    put_len(&mut out, state.others.len());
    let mut previous = 0i64;
    for event in &state.events {
        put_i64(&mut out, event.ts.wrapping_sub(previous));
        previous = event.ts;
        put_i64(&mut out, event.amount);
        out.extend_from_slice(&event.tagged.to_le_bytes());
    }
    for other in &state.others {
        out.extend_from_slice(&other.to_le_bytes());
    }
    put_len(&mut out, state.windows.len());
    for window in &state.windows {
        put_u64(&mut out, window.start);
        put_u64(&mut out, window.count);
        put_i128(&mut out, window.sum);
        put_i128(&mut out, window.sum_sq);
    }
    put_len(&mut out, state.max.len());
    for (seq, amount) in &state.max {
        put_u64(&mut out, *seq);
        put_i64(&mut out, *amount);
    }
    put_len(&mut out, distinct.len());
    for (start, counts) in &distinct {
        put_u64(&mut out, *start);
        put_len(&mut out, counts.len());
        for (key, count) in counts {
            out.extend_from_slice(&key.to_le_bytes());
            put_u64(&mut out, u64::from(*count));
        }
    }
    put_len(&mut out, state.risk.len());
    for risk in &state.risk {
        put_u64(&mut out, risk.start);
        put_u64(&mut out, risk.end);
        put_u64(&mut out, risk.count);
        put_u64(&mut out, risk.frauds);
    }
    out
}

/// The bytes after the format byte, read front to back.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn fixed(&mut self) -> Result<u64, SnapshotError> {
        let (head, rest) = self.bytes.split_first_chunk::<8>().ok_or(SnapshotError::Truncated)?;
        self.bytes = rest;
        Ok(u64::from_le_bytes(*head))
    }

    /// A varint of at most `bits` bits.
    fn varint(&mut self, bits: u32) -> Result<u128, SnapshotError> {
        let mut value = 0u128;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.bytes.split_first().ok_or(SnapshotError::Truncated)?;
            self.bytes = rest;
            let part = u128::from(byte & 0x7f);
            if shift >= bits || (shift > 0 && part >> (bits - shift) != 0) {
                return Err(SnapshotError::Inconsistent("a varint too long for its type".to_owned()));
            }
            value |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.varint(64).map(|value| value as u64)
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        let value = self.u64()?;
        Ok((value >> 1) as i64 ^ -((value & 1) as i64))
    }

    fn i128(&mut self) -> Result<i128, SnapshotError> {
        let value = self.varint(128)?;
        Ok((value >> 1) as i128 ^ -((value & 1) as i128))
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        u32::try_from(self.u64()?).map_err(|_| SnapshotError::Inconsistent("a count beyond 32 bits".to_owned()))
    }

    /// A count of items of at least `size` bytes each, which the bytes left must hold.
    fn count(&mut self, size: usize) -> Result<usize, SnapshotError> {
        let n = self.u64()?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(size) <= self.bytes.len() => Ok(n),
            _ => Err(SnapshotError::Truncated),
        }
    }
}

/// An entity's stored state from its stored form (after the format byte).
pub(crate) fn decode(payload: &[u8]) -> Result<StoredState, SnapshotError> {
    let mut reader = Reader { bytes: payload };
    let first_seq = reader.u64()?;
    let n_events = reader.count(MIN_EVENT)?;
    let n_others = reader.count(8)?;
    if n_events * MIN_EVENT + n_others * 8 > reader.bytes.len() {
        return Err(SnapshotError::Truncated);
    }
    let mut previous = 0i64;
    let events = (0..n_events)
        .map(|_| {
            let ts = previous.wrapping_add(reader.i64()?);
            previous = ts;
            Ok(Event::from_parts(ts, reader.i64()?, reader.fixed()?))
        })
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    let others = (0..n_others).map(|_| reader.fixed()).collect::<Result<Vec<_>, _>>()?;
    let n = reader.count(4)?;
    let windows = (0..n)
        .map(|_| {
            Ok(WindowAgg {
                start: reader.u64()?,
                count: reader.u64()?,
                sum: reader.i128()?,
                sum_sq: reader.i128()?,
            })
        })
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    let n = reader.count(2)?;
    let max = (0..n)
        .map(|_| Ok((reader.u64()?, reader.i64()?)))
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    let n = reader.count(2)?;
    let mut distinct = Vec::with_capacity(n);
    for _ in 0..n {
        let start = reader.u64()?;
        let n_counts = reader.count(9)?;
        let counts = (0..n_counts)
            .map(|_| Ok((reader.fixed()?, reader.u32()?)))
            .collect::<Result<Vec<_>, SnapshotError>>()?;
        distinct.push((start, counts));
    }
    let n = reader.count(4)?;
    let risk = (0..n)
        .map(|_| {
            Ok(RiskAgg {
                start: reader.u64()?,
                end: reader.u64()?,
                count: reader.u64()?,
                frauds: reader.u64()?,
            })
        })
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    if !reader.bytes.is_empty() {
        return Err(SnapshotError::Inconsistent(format!(
            "{} bytes after the entity's state",
            reader.bytes.len()
        )));
    }
    Ok(StoredState {
        events,
        others,
        first_seq,
        windows,
        max,
        distinct,
        risk,
    })
}
