//! Ethereum addresses: 20 bytes written as `0x` and 40 hex digits. A
//! mixed-case address carries an EIP-55 checksum, which must match; an
//! all-lower or all-upper one carries none.

use std::fmt;

use sha3::{Digest as _, Keccak256};

/// An Ethereum address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address([u8; 20]);

/// Why text is not an address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not `0x` and 40 hex digits.
    #[error("an Ethereum address is 0x and 40 hex digits (got {0} characters)")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("an Ethereum address is 0x and 40 hex digits: {0:?} is not a hex digit")]
    Digit(char),
    /// Mixed case that is not the EIP-55 checksum.
    #[error("the address's mixed case is not its EIP-55 checksum (a typo?); the checksummed form is {0}")]
    Checksum(String),
}

impl Address {
    /// The zero address (mints and burns of tokens).
    pub const ZERO: Address = Address([0; 20]);

    /// Parses `0x` + 40 hex digits, checking the EIP-55 checksum of a mixed-case address.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        let digits = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .ok_or(AddressError::Length(text.chars().count()))?;
        if digits.len() != 40 || !digits.is_ascii() {
            return Err(AddressError::Length(text.chars().count()));
        }
        let mut bytes = [0u8; 20];
        for (idx, pair) in digits.as_bytes().chunks(2).enumerate() {
            let nibble = |c: u8| (c as char).to_digit(16).ok_or(AddressError::Digit(c as char));
            bytes[idx] = u8::try_from(nibble(pair[0])? * 16 + nibble(pair[1])?).unwrap_or(0);
        }
        let address = Self(bytes);
        let has_lower = digits.bytes().any(|c| c.is_ascii_lowercase());
        let has_upper = digits.bytes().any(|c| c.is_ascii_uppercase());
        if has_lower && has_upper {
            let checksummed = address.checksummed();
            if checksummed[2..] != *digits {
                return Err(AddressError::Checksum(checksummed));
            }
        }
        Ok(address)
    }

    /// The 20 bytes.
    pub fn bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// From the last 20 bytes of a 32-byte word (an indexed event argument).
    pub fn from_word(word: &[u8; 32]) -> Self {
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&word[12..]);
        Self(bytes)
    }

    /// As a 32-byte word in hex (`0x` + 64 digits), for a log topic filter.
    pub fn topic(&self) -> String {
        format!("0x{:0>64}", hex::encode(self.0))
    }

    /// The EIP-55 form: a hex digit is upper case where the Keccak-256 of the
    /// lower-case address has a high nibble.
    pub fn checksummed(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = Keccak256::digest(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (idx, c) in lower.chars().enumerate() {
            let nibble = (hash[idx / 2] >> if idx % 2 == 0 { 4 } else { 0 }) & 0x0f;
            out.push(if nibble >= 8 { c.to_ascii_uppercase() } else { c });
        }
        out
    }
}

/// The lower-case form, as JSON-RPC writes it and as decisions store it.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        // nodes answer in lower case, or checksummed: both parse
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Keccak-256 of bytes.
pub fn keccak256(bytes: &[u8]) -> [u8; 32] {
    Keccak256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_examples_round_trip_and_a_wrong_case_is_refused() {
        // the examples of EIP-55
        for text in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let address = Address::parse(text).expect(text);
            assert_eq!(address.checksummed(), text);
            assert_eq!(Address::parse(&text.to_lowercase()), Ok(address));
            assert_eq!(Address::parse(&format!("0x{}", text[2..].to_uppercase())), Ok(address));
        }
        let typo = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert_eq!(
            Address::parse(typo),
            Err(AddressError::Checksum(
                "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".to_owned()
            ))
        );
    }

    #[test]
    fn wrong_lengths_and_digits_are_refused() {
        assert_eq!(Address::parse("0x1234"), Err(AddressError::Length(6)));
        assert_eq!(
            Address::parse("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            Err(AddressError::Length(40))
        );
        assert_eq!(
            Address::parse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedaa"),
            Err(AddressError::Length(44))
        );
        assert_eq!(
            Address::parse("0xgaaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
            Err(AddressError::Digit('g'))
        );
        // multi-byte characters are counted as characters, not bytes
        assert!(matches!(Address::parse("0xé"), Err(AddressError::Length(3))));
        assert!(Address::parse(&format!("0x{}", "é".repeat(20))).is_err());
    }

    #[test]
    fn transfer_topic_is_the_keccak_of_its_signature() {
        assert_eq!(
            hex::encode(keccak256(b"Transfer(address,address,uint256)")),
            "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
        );
        let address = Address::parse("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").expect("address");
        assert_eq!(
            address.topic(),
            "0x0000000000000000000000005aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
        );
    }
}
