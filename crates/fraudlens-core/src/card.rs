//! Card numbers never travel past the parser: a field marked as a card number
//! is replaced by a keyed hash (HMAC-SHA256) as soon as it is read, so the same
//! card always maps to the same token but the token cannot be reversed without
//! the key.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A secret string that never shows up in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call sites are the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(\"[redacted]\")")
    }
}

impl serde::Serialize for Secret {
    /// Serialized as a placeholder, so a dumped config never leaks it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

/// Turns card numbers into stable tokens (`card_` + 32 hex digits).
#[derive(Clone)]
pub struct CardHasher {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for CardHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardHasher { .. }")
    }
}

impl CardHasher {
    /// Minimum key length in bytes: a short key makes tokens guessable by brute force over card numbers.
    pub const MIN_KEY_LEN: usize = 16;

    /// A hasher keyed with `key`; `None` when the key is shorter than [`Self::MIN_KEY_LEN`].
    pub fn new(key: &Secret) -> Option<Self> {
        if key.expose().len() < Self::MIN_KEY_LEN {
            return None;
        }
        let mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).ok()?;
        Some(Self { mac })
    }

    /// The token for a card number, or `None` if `pan` is not 12–19 digits
    /// (spaces and dashes between digit groups are ignored).
    pub fn token(&self, pan: &str) -> Option<String> {
        let mut digits = [0u8; 19];
        let mut n_digits = 0;
        for b in pan.trim().bytes() {
            match b {
                b'0'..=b'9' if n_digits < digits.len() => {
                    digits[n_digits] = b;
                    n_digits += 1;
                }
                b' ' | b'-' => {}
                _ => return None,
            }
        }
        if n_digits < 12 {
            return None;
        }
        let mut mac = self.mac.clone();
        mac.update(&digits[..n_digits]);
        let tag = mac.finalize().into_bytes();
        Some(format!("card_{}", hex::encode(&tag[..16])))
    }
}

/// `true` for 13–19 digits (spaces and dashes between groups allowed) that
/// pass the Luhn check: a value that is probably a card number.
pub fn looks_like_card_number(text: &str) -> bool {
    let mut digits = 0u32;
    let mut sum = 0u32;
    for b in text.trim().bytes().rev() {
        match b {
            b'0'..=b'9' => {
                let mut d = u32::from(b - b'0');
                if digits % 2 == 1 {
                    d *= 2;
                    if d > 9 {
                        d -= 9;
                    }
                }
                sum += d;
                digits += 1;
            }
            b' ' | b'-' => {}
            _ => return false,
        }
    }
    (13..=19).contains(&digits) && sum.is_multiple_of(10)
}

/// `text` with every probable card number (13–19 digits, single spaces or
/// dashes between groups allowed, Luhn-valid) replaced by `[card]`: for raw
/// records that could not be parsed (dead letters, error reports) and so never
/// had their card field tokenised.
pub fn redact_card_numbers(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        // the longest run of digits with single separators starting here
        let mut end = i;
        let mut j = i;
        while j < bytes.len() {
            if bytes[j].is_ascii_digit() {
                j += 1;
                end = j;
            } else if matches!(bytes[j], b' ' | b'-') && bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
                j += 1;
            } else {
                break;
            }
        }
        if looks_like_card_number(&text[i..end]) {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..i]);
            out.push_str("[card]");
            copied = end;
        }
        i = end.max(i + 1);
    }
    match out {
        None => std::borrow::Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> CardHasher {
        CardHasher::new(&Secret::new("0123456789abcdef0123")).unwrap()
    }

    #[test]
    fn card_numbers_in_raw_text_are_redacted() {
        let raw = r#"{"pan":"4111 1111 1111 1111","id":"t1","amount":12,"ref":"4111111111111112"}"#;
        assert_eq!(
            redact_card_numbers(raw),
            r#"{"pan":"[card]","id":"t1","amount":12,"ref":"4111111111111112"}"#
        );
        assert_eq!(redact_card_numbers("x,5500-0000-0000-0004,y"), "x,[card],y");
        assert!(matches!(
            redact_card_numbers("t1,12.50,EUR"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn same_card_same_token_regardless_of_formatting() {
        let a = hasher().token("4111 1111 1111 1111").unwrap();
        let b = hasher().token("4111-1111-1111-1111").unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("card_") && a.len() == 37);
        assert!(!a.contains("4111"));
        assert_ne!(a, hasher().token("4111111111111112").unwrap());
    }

    #[test]
    fn different_keys_give_different_tokens() {
        let other = CardHasher::new(&Secret::new("another key of enough length")).unwrap();
        assert_ne!(hasher().token("4111111111111111"), other.token("4111111111111111"));
    }

    #[test]
    fn rejects_non_card_values_and_short_keys() {
        assert!(hasher().token("41111111").is_none());
        assert!(hasher().token("4111111111111111111111").is_none());
        assert!(hasher().token("4111x111111111111").is_none());
        assert!(CardHasher::new(&Secret::new("short")).is_none());
    }

    #[test]
    fn card_number_detection() {
        for pan in [
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "378282246310005",
            "6011111111111117",
        ] {
            assert!(looks_like_card_number(pan), "{pan}");
        }
        for other in [
            "4111 1111 1111 1112",
            "12345",
            "1767261600123",
            "abc",
            "4111 1111 1111 111x",
        ] {
            assert!(!looks_like_card_number(other), "{other}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let secret = Secret::new("hunter2-hunter2-hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{:?}", hasher()).contains("0123"));
    }
}
