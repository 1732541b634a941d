//! JSON as fraudlens reads request bodies and records: strict where
//! `serde_json` is lenient.
//!
//! `serde_json::from_slice::<Value>` keeps the *last* of two equal keys, so
//! `{"amount":"1.00","amount":"9999.00"}` is scored as 9999.00 while a log
//! line, a WAF or another JSON library may have read 1.00. [`parse`] refuses a
//! duplicate key at any depth instead, and bounds the nesting depth. It builds
//! the same [`serde_json::Value`] in the same single pass (the duplicate check
//! is the `Option` that `Map::insert` returns anyway), so it costs what the
//! lenient parse cost.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

/// Deepest accepted nesting of arrays and objects. Transactions nest a few
/// levels (Stripe's charge object: four); `serde_json`'s own limit is 128.
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not a JSON document fraudlens accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON (syntax, encoding, trailing characters).
    #[error("invalid json: {message}")]
    Syntax {
        /// The parser's message with line and column.
        message: String,
    },
    /// The same key twice in one object.
    #[error("duplicate key {key:?}{} at line {line} column {column}", path_suffix(path))]
    DuplicateKey {
        /// The key, shortened.
        key: String,
        /// Dotted path of the object holding it (empty at the top level).
        path: String,
        /// 1-based line where the parser noticed (around the second occurrence).
        line: usize,
        /// 1-based column where the parser noticed.
        column: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("json nested deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
}

/// Parses one JSON document, refusing duplicate keys at any depth and nesting
/// deeper than [`MAX_DEPTH`]. Numbers are read as `serde_json` reads them.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let context = Context::default();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result = ValueSeed {
        depth: 0,
        context: &context,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    result.map_err(|error| {
        let (line, column) = (error.line(), error.column());
        match context.problem.into_inner() {
            Some(Problem::DuplicateKey(key)) => {
                let mut path = context.path.into_inner();
                path.reverse();
                JsonError::DuplicateKey {
                    key,
                    path: path.join("."),
                    line,
                    column,
                }
            }
            Some(Problem::TooDeep) => JsonError::TooDeep { max: MAX_DEPTH },
            None => JsonError::Syntax {
                message: error.to_string(),
            },
        }
    })
}

fn path_suffix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in {path:?}")
    }
}

/// What the visitors found, beyond what `serde_json`'s error can say.
#[derive(Default)]
struct Context {
    /// Set by the visitor that refused the document; its `serde_json` error
    /// only carries the position.
    problem: RefCell<Option<Problem>>,
    /// Keys from the refused object up to the root (innermost first), pushed
    /// while the error unwinds, so the happy path tracks no path.
    path: RefCell<Vec<String>>,
}

enum Problem {
    DuplicateKey(String),
    TooDeep,
}

impl Context {
    fn fail<E: de::Error>(&self, problem: Problem) -> E {
        *self.problem.borrow_mut() = Some(problem);
        E::custom("refused")
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

#[derive(Clone, Copy)]
struct ValueSeed<'c> {
    depth: usize,
    context: &'c Context,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ValueSeed<'_> {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.context.fail(Problem::TooDeep));
        }
        Ok(Self {
            depth: self.depth + 1,
            ..self
        })
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // serde_json hands over finite values only (it refuses overflow)
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let seed = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        let mut idx = 0usize;
        loop {
            match seq.next_element_seed(seed) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(error) => {
                    self.context.path.borrow_mut().push(idx.to_string());
                    return Err(error);
                }
            }
            idx += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let seed = self.nested()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = match access.next_value_seed(seed) {
                Ok(value) => value,
                Err(error) => {
                    self.context.path.borrow_mut().push(shorten(&key));
                    return Err(error);
                }
            };
            // the duplicate check is the lookup the insert does anyway
            match map.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
                Entry::Occupied(entry) => {
                    return Err(self.context.fail(Problem::DuplicateKey(shorten(entry.key()))));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(input: &str, expected: Result<Value, &str>) {
        let result = parse(input.as_bytes()).map_err(|error| error.to_string());
        assert_eq!(result, expected.map_err(str::to_owned), "{input}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        check(
            r#"{"amount":"1.00","amount":"9999.00"}"#,
            Err(r#"duplicate key "amount" at line 1 column 36"#),
        );
        check(
            r#"{"a":{"b":[1,{"c":1,"c":1}]}}"#,
            Err(r#"duplicate key "c" in "a.b.1" at line 1 column 26"#),
        );
        // the same key in sibling objects is no duplicate
        check(
            r#"{"a":{"k":1},"b":{"k":2}}"#,
            Ok(serde_json::json!({"a": {"k": 1}, "b": {"k": 2}})),
        );
        // keys are compared after unescaping
        check(r#"{"a":1,"\u0061":2}"#, Err(r#"duplicate key "a" at line 1 column 18"#));
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse(nested(MAX_DEPTH + 1).as_bytes()),
            Err(JsonError::TooDeep { max: MAX_DEPTH })
        );
        let objects = format!("{}1{}", r#"{"a":"#.repeat(MAX_DEPTH + 1), "}".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(objects.as_bytes()), Err(JsonError::TooDeep { max: MAX_DEPTH }));
        // far deeper than the stack would allow for a recursive parse without a bound
        assert!(parse(nested(100_000).as_bytes()).is_err());
    }

    #[test]
    fn syntax_errors() {
        for input in ["", "{", r#"{"a":1}x"#, r#"{"a":1,}"#, "\"\u{0}\"", "[1e999]"] {
            assert!(
                matches!(parse(input.as_bytes()), Err(JsonError::Syntax { .. })),
                "{input:?}"
            );
        }
        assert!(matches!(parse(b"\"\xff\""), Err(JsonError::Syntax { .. })));
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |v| v.is_finite())
                .prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]{0,2}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Without duplicates, the strict parse is serde_json's parse.
        #[test]
        fn same_value_as_serde_json(value in arbitrary_json()) {
            let text = serde_json::to_string(&value).unwrap();
            let strict = parse(text.as_bytes()).unwrap();
            prop_assert_eq!(&strict, &serde_json::from_str::<Value>(&text).unwrap());
            prop_assert_eq!(strict, value);
        }
    }
}
