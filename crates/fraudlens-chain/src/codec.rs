//! The encodings of JSON-RPC answers: quantities as `0x` hex, 256-bit
//! words, and the ABI encoding of a `string` return value.

use serde_json::Value;

/// Wei per Ether.
pub const WEI_PER_ETHER: f64 = 1e18;

/// Why a field of an answer could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// The hex digits of `0x…` (an empty `0x` is zero).
fn digits(text: &str) -> Result<&str, DecodeError> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| DecodeError(format!("expected 0x hex, got {:?}", cut(text))))?;
    if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(DecodeError(format!("expected 0x hex, got {:?}", cut(text))));
    }
    Ok(digits.trim_start_matches('0'))
}

fn cut(text: &str) -> String {
    text.chars().take(80).collect()
}

/// A quantity that fits 64 bits (block numbers, timestamps, counts).
pub fn u64_of(text: &str) -> Result<u64, DecodeError> {
    let digits = digits(text)?;
    if digits.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(digits, 16).map_err(|_| DecodeError(format!("{:?} does not fit 64 bits", cut(text))))
}

/// A quantity that fits 128 bits (Ether amounts in wei: all the Ether there is fits).
pub fn u128_of(text: &str) -> Result<u128, DecodeError> {
    let digits = digits(text)?;
    if digits.is_empty() {
        return Ok(0);
    }
    u128::from_str_radix(digits, 16).map_err(|_| DecodeError(format!("{:?} does not fit 128 bits", cut(text))))
}

/// A quantity of up to 256 bits as a float (token amounts: any `uint256`).
pub fn f64_of(text: &str) -> Result<f64, DecodeError> {
    let digits = digits(text)?;
    if digits.len() > 64 {
        return Err(DecodeError(format!("{:?} is longer than 256 bits", cut(text))));
    }
    Ok(digits.bytes().fold(0.0, |acc, c| {
        acc * 16.0 + f64::from((c as char).to_digit(16).unwrap_or(0))
    }))
}

/// A field of a JSON object that must be a string.
pub fn str_field<'v>(object: &'v Value, name: &str) -> Result<&'v str, DecodeError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| DecodeError(format!("field {name:?} missing or not a string")))
}

/// [`str_field`] with the error as text.
pub fn text_field<'v>(object: &'v Value, name: &str) -> Result<&'v str, String> {
    str_field(object, name).map_err(|error| error.to_string())
}

/// A hex quantity field of 64 bits.
pub fn u64_field(object: &Value, name: &str) -> Result<u64, DecodeError> {
    u64_of(str_field(object, name)?).map_err(|DecodeError(reason)| DecodeError(format!("{name}: {reason}")))
}

/// Bytes of `0x…` hex data.
pub fn bytes_of(text: &str) -> Result<Vec<u8>, DecodeError> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| DecodeError(format!("expected 0x data, got {:?}", cut(text))))?;
    hex::decode(digits).map_err(|error| DecodeError(format!("{:?}: {error}", cut(text))))
}

/// A 32-byte word (a log topic).
pub fn word_of(text: &str) -> Result<[u8; 32], DecodeError> {
    bytes_of(text)?
        .try_into()
        .map_err(|_| DecodeError(format!("expected a 32-byte word, got {:?}", cut(text))))
}

/// The `string` an ABI-encoded return value holds; tokens that return a
/// `bytes32` instead (early tokens did) are read up to the first zero byte.
/// `None` when the data is neither (no such function, or an empty answer).
pub fn abi_string(data: &[u8]) -> Option<String> {
    let text = if data.len() >= 64 && word_usize(&data[..32]) == Some(32) {
        let len = word_usize(&data[32..64])?;
        let bytes = data.get(64..64usize.checked_add(len)?)?;
        String::from_utf8_lossy(bytes).into_owned()
    } else if data.len() == 32 {
        let end = data.iter().position(|byte| *byte == 0).unwrap_or(32);
        String::from_utf8_lossy(&data[..end]).into_owned()
    } else {
        return None;
    };
    // a name is a label: control characters and surrounding blanks are not part of it
    let clean: String = text.chars().filter(|c| !c.is_control()).take(64).collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| clean.to_owned())
}

/// A 32-byte big-endian word as a `usize`, when it is small.
pub fn word_usize(word: &[u8]) -> Option<usize> {
    if word.len() != 32 || word[..24].iter().any(|byte| *byte != 0) {
        return None;
    }
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&word[24..]);
    usize::try_from(u64::from_be_bytes(tail)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(u64_of("0x0"), Ok(0));
        assert_eq!(u64_of("0x"), Ok(0));
        assert_eq!(u64_of("0x1b4"), Ok(436));
        assert!(u64_of("1b4").is_err());
        assert!(u64_of("0x1g").is_err());
        assert!(u64_of("0x10000000000000000").is_err());
        assert_eq!(u128_of("0xde0b6b3a7640000"), Ok(1_000_000_000_000_000_000));
        assert_eq!(f64_of("0xde0b6b3a7640000"), Ok(1e18));
        assert_eq!(f64_of(&format!("0x{}", "f".repeat(64))), Ok(2f64.powi(256)));
        assert!(f64_of(&format!("0x{}", "f".repeat(65))).is_err());
    }

    #[test]
    fn abi_strings_and_bytes32_names() {
        let mut encoded = vec![0u8; 96];
        encoded[31] = 32;
        encoded[63] = 4;
        encoded[64..68].copy_from_slice(b"Gold");
        assert_eq!(abi_string(&encoded).as_deref(), Some("Gold"));
        let mut bytes32 = [0u8; 32];
        bytes32[..5].copy_from_slice(b"Maker");
        assert_eq!(abi_string(&bytes32).as_deref(), Some("Maker"));
        assert_eq!(abi_string(&[]), None);
        // a length past the data is no string
        encoded[63] = 200;
        assert_eq!(abi_string(&encoded), None);
        // control characters are dropped
        encoded[63] = 5;
        encoded[64..69].copy_from_slice(b"A\nB\x07C");
        assert_eq!(abi_string(&encoded).as_deref(), Some("ABC"));
    }
}
