//! The schema maps a user's column names (CSV) or field paths (JSON) onto the
//! roles fraudlens understands, so nobody has to rename columns to use it.
//!
//! [`SchemaConfig`] is what a TOML file says; [`Schema`] is the checked form,
//! holding the card-number hasher when a field needs one. A CSV header is
//! resolved once into a [`ColumnBinding`]; each row is then parsed by index.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::tabular::{ParsedNumber, parse_number};
use crate::{
    Amount, AmountError, AttributeValue, CardHasher, Currency, EntityKey, IdError, Label, LabelError, Secret,
    Timestamp, TimestampError, TimestampFormat, Transaction, TransactionId,
};

/// Whether amounts are written in major units (`12.34`) or minor units (`1234`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmountUnit {
    /// Decimal amounts in the currency's main unit.
    #[default]
    Major,
    /// Whole numbers of the smallest unit, as Stripe and most card networks send.
    Minor,
}

/// How an attribute is used by models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeKind {
    /// A number; missing values allowed.
    Numeric,
    /// A label from a set (country, channel, merchant category…).
    Categorical,
}

/// Where an entity key is read from. In TOML either a field name
/// (`customer = "CUSTOMER_ID"`) or a table
/// (`card = { field = "pan", card_number = true }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityField {
    /// Column name or dotted JSON path.
    pub field: String,
    /// The value is a card number: replace it by a keyed hash at parse time.
    #[serde(default)]
    pub card_number: bool,
    /// Records without this key are accepted (its features are then missing).
    #[serde(default)]
    pub optional: bool,
}

/// Where an attribute is read from and what it is. In TOML either a kind
/// (`mcc = "categorical"`, field named like the attribute) or a table
/// (`amount_usd = { field = "amt_usd", kind = "numeric" }`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeField {
    /// Column name or dotted JSON path; defaults to the attribute's name.
    #[serde(default)]
    pub field: Option<String>,
    /// Numeric or categorical.
    pub kind: AttributeKind,
    /// When false, a CSV without this column is accepted and the attribute dropped.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// The schema as written in TOML (`[schema]`). Every field has a default that
/// fits the `fraudlens simulate` format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaConfig {
    /// Field holding the unique transaction id.
    pub transaction_id: String,
    /// Field holding the event time.
    pub timestamp: String,
    /// How the timestamp is written.
    pub timestamp_format: TimestampFormat,
    /// Field holding the amount.
    pub amount: String,
    /// Major (`12.34`) or minor (`1234`) units.
    pub amount_unit: AmountUnit,
    /// Field holding the currency code; when absent from the data, `default_currency` is used.
    pub currency: Option<String>,
    /// Currency of records that carry none.
    pub default_currency: Currency,
    /// Field holding the fraud label, if the data has one.
    pub label: Option<String>,
    /// Entity keys by name (`customer`, `card`, `terminal`, `device`…).
    #[serde(deserialize_with = "entities_de")]
    pub entities: BTreeMap<String, EntityField>,
    /// Extra attributes by name.
    #[serde(deserialize_with = "attributes_de")]
    pub attributes: BTreeMap<String, AttributeField>,
    /// Fields carried along for analysis (e.g. `fraud_scenario`), never used as model inputs.
    pub passthrough: Vec<String>,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        let entity = |field: &str| EntityField {
            field: field.to_owned(),
            card_number: false,
            optional: false,
        };
        let categorical = AttributeField {
            field: None,
            kind: AttributeKind::Categorical,
            required: false,
        };
        Self {
            transaction_id: "transaction_id".into(),
            timestamp: "timestamp".into(),
            timestamp_format: TimestampFormat::Auto,
            amount: "amount".into(),
            amount_unit: AmountUnit::Major,
            currency: Some("currency".into()),
            default_currency: Currency::parse("EUR").unwrap_or_else(|_| unreachable!("valid literal")),
            label: Some("is_fraud".into()),
            entities: BTreeMap::from([
                ("customer".to_owned(), entity("customer_id")),
                ("terminal".to_owned(), entity("terminal_id")),
            ]),
            attributes: ["mcc", "channel", "country"]
                .into_iter()
                .map(|name| (name.to_owned(), categorical.clone()))
                .collect(),
            passthrough: vec!["fraud_scenario".into()],
        }
    }
}

/// A configuration problem: the schema itself, or a header that does not fit it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A role was given an empty field name.
    #[error("schema field for {role} is empty")]
    EmptyField {
        /// The role.
        role: String,
    },
    /// Entity and attribute names become feature names, so they are restricted.
    #[error("invalid name {name:?}: use lowercase letters, digits and underscores")]
    InvalidName {
        /// The offending name.
        name: String,
    },
    /// The same name is used for an entity and an attribute.
    #[error("name {name:?} is used twice")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A card-number field without a key to hash it with.
    #[error(
        "entity {entity:?} is a card number, which needs security.card_hash_key (at least {min} bytes; env FRAUDLENS_SECURITY__CARD_HASH_KEY)"
    )]
    MissingCardKey {
        /// The entity.
        entity: String,
        /// Minimum key length.
        min: usize,
    },
    /// A passthrough field is also a model input or the label.
    #[error("passthrough field {field:?} is also used as {role}")]
    PassthroughOverlap {
        /// The field.
        field: String,
        /// The other role.
        role: String,
    },
    /// A card-number field is also used for something that would keep it in clear.
    #[error("card-number field {field:?} is also used as {role}: it would be kept in clear")]
    CardFieldReused {
        /// The field.
        field: String,
        /// The other role.
        role: String,
    },
    /// The header lacks a column the schema requires.
    #[error("column {field:?} ({role}) not found in header; columns are: {available}")]
    MissingColumn {
        /// The role.
        role: String,
        /// The configured field name.
        field: String,
        /// The header, shortened.
        available: String,
    },
}

/// A record that cannot become a transaction. Messages never contain card numbers.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// A required field is absent or empty.
    #[error("missing {role} (field {field:?})")]
    MissingField {
        /// The role.
        role: String,
        /// The field name.
        field: String,
    },
    /// A field holds an object or array where a single value belongs.
    #[error("field {field:?} ({role}) is not a single value")]
    NotScalar {
        /// The role.
        role: String,
        /// The field name.
        field: String,
    },
    /// Transaction id refused.
    #[error("transaction id in field {field:?} {source}")]
    InvalidId {
        /// The field name.
        field: String,
        /// Why.
        source: IdError,
    },
    /// Entity key refused.
    #[error("{entity} key in field {field:?} {source}")]
    InvalidEntity {
        /// The entity.
        entity: String,
        /// The field name.
        field: String,
        /// Why.
        source: IdError,
    },
    /// A card-number field holds something that is not a card number. The value is not shown.
    #[error("field {field:?} ({entity}) is not a card number (12-19 digits)")]
    InvalidCardNumber {
        /// The entity.
        entity: String,
        /// The field name.
        field: String,
    },
    /// Timestamp refused.
    #[error("field {field:?}: {source}")]
    InvalidTimestamp {
        /// The field name.
        field: String,
        /// Why.
        source: TimestampError,
    },
    /// Amount or currency refused.
    #[error("field {field:?}: {source}")]
    InvalidAmount {
        /// The field name.
        field: String,
        /// Why.
        source: AmountError,
    },
    /// Label refused.
    #[error("field {field:?}: {source}")]
    InvalidLabel {
        /// The field name.
        field: String,
        /// Why.
        source: LabelError,
    },
    /// A numeric attribute holds text.
    #[error("field {field:?} ({attribute}): unparsable number {value:?}")]
    InvalidNumber {
        /// The attribute.
        attribute: String,
        /// The field name.
        field: String,
        /// The value, shortened.
        value: String,
    },
}

/// Column indices of each role in one CSV header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnBinding {
    id: usize,
    timestamp: usize,
    amount: usize,
    currency: Option<usize>,
    label: Option<usize>,
    entities: Vec<Option<usize>>,
    attributes: Vec<Option<usize>>,
    passthrough: Vec<Option<usize>>,
    n_columns: usize,
    notes: Vec<String>,
}

impl ColumnBinding {
    /// Number of columns in the header: every row must have as many.
    pub fn n_columns(&self) -> usize {
        self.n_columns
    }

    /// Human-readable notes about optional columns that were not found.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Column of each passthrough field (in schema order), `None` when absent.
    pub fn passthrough_columns(&self) -> &[Option<usize>] {
        &self.passthrough
    }
}

/// A checked schema, ready to parse records.
#[derive(Clone, Debug)]
pub struct Schema {
    config: SchemaConfig,
    entity_names: Vec<String>,
    entity_fields: Vec<EntityField>,
    attribute_names: Vec<String>,
    attribute_fields: Vec<(String, AttributeField)>,
    card_hasher: Option<CardHasher>,
}

impl Schema {
    /// Checks `config`; `card_hash_key` is required when an entity is a card number.
    pub fn new(config: SchemaConfig, card_hash_key: Option<&Secret>) -> Result<Self, SchemaError> {
        for (role, field) in [
            ("transaction id", &config.transaction_id),
            ("timestamp", &config.timestamp),
            ("amount", &config.amount),
        ] {
            if field.trim().is_empty() {
                return Err(SchemaError::EmptyField { role: role.into() });
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for name in config.entities.keys().chain(config.attributes.keys()) {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && name.as_bytes()[0].is_ascii_lowercase();
            if !valid {
                return Err(SchemaError::InvalidName { name: name.clone() });
            }
            if !seen.insert(name) {
                return Err(SchemaError::DuplicateName { name: name.clone() });
            }
        }
        for (name, entity) in &config.entities {
            if entity.field.trim().is_empty() {
                return Err(SchemaError::EmptyField {
                    role: format!("entity {name}"),
                });
            }
        }
        let needs_key = config.entities.iter().find(|(_, entity)| entity.card_number);
        let card_hasher = match (needs_key, card_hash_key) {
            (None, _) => None,
            (Some((name, _)), key) => {
                Some(
                    key.and_then(CardHasher::new)
                        .ok_or_else(|| SchemaError::MissingCardKey {
                            entity: name.clone(),
                            min: CardHasher::MIN_KEY_LEN,
                        })?,
                )
            }
        };
        let attribute_fields: Vec<_> = config
            .attributes
            .iter()
            .map(|(name, attribute)| {
                (
                    attribute.field.clone().unwrap_or_else(|| name.clone()),
                    attribute.clone(),
                )
            })
            .collect();
        for field in &config.passthrough {
            let role = if Some(field) == config.label.as_ref() {
                Some("the label".to_owned())
            } else if [&config.transaction_id, &config.timestamp, &config.amount].contains(&field) {
                Some("a transaction field".to_owned())
            } else if let Some((name, _)) = config.entities.iter().find(|(_, entity)| &entity.field == field) {
                Some(format!("entity {name}"))
            } else {
                attribute_fields
                    .iter()
                    .find(|(f, _)| f == field)
                    .map(|(f, _)| format!("attribute {f}"))
            };
            if let Some(role) = role {
                return Err(SchemaError::PassthroughOverlap {
                    field: field.clone(),
                    role,
                });
            }
        }
        // a card-number field may play no other role: every other role keeps its value in clear
        for (card_name, card) in config.entities.iter().filter(|(_, entity)| entity.card_number) {
            let mut others: Vec<(String, &str)> = vec![
                ("transaction id".into(), config.transaction_id.as_str()),
                ("timestamp".into(), config.timestamp.as_str()),
                ("amount".into(), config.amount.as_str()),
            ];
            others.extend(config.currency.as_deref().map(|field| ("currency".to_owned(), field)));
            others.extend(config.label.as_deref().map(|field| ("label".to_owned(), field)));
            others.extend(
                config
                    .entities
                    .iter()
                    .filter(|(name, _)| *name != card_name)
                    .map(|(name, entity)| (format!("entity {name}"), entity.field.as_str())),
            );
            others.extend(
                attribute_fields
                    .iter()
                    .map(|(field, _)| (format!("attribute {field}"), field.as_str())),
            );
            others.extend(
                config
                    .passthrough
                    .iter()
                    .map(|field| ("passthrough".to_owned(), field.as_str())),
            );
            if let Some((role, _)) = others.iter().find(|(_, field)| field.eq_ignore_ascii_case(&card.field)) {
                return Err(SchemaError::CardFieldReused {
                    field: card.field.clone(),
                    role: role.clone(),
                });
            }
        }
        Ok(Self {
            entity_names: config.entities.keys().cloned().collect(),
            entity_fields: config.entities.values().cloned().collect(),
            attribute_names: config.attributes.keys().cloned().collect(),
            attribute_fields,
            card_hasher,
            config,
        })
    }

    /// The configuration this schema was built from.
    pub fn config(&self) -> &SchemaConfig {
        &self.config
    }

    /// Entity names in the order of [`Transaction::entities`].
    pub fn entity_names(&self) -> &[String] {
        &self.entity_names
    }

    /// Attribute names in the order of [`Transaction::attributes`].
    pub fn attribute_names(&self) -> &[String] {
        &self.attribute_names
    }

    /// Resolves a CSV header. Exact names win; otherwise a unique
    /// case-insensitive match is accepted.
    pub fn bind_columns<S: AsRef<str>>(&self, header: &[S]) -> Result<ColumnBinding, SchemaError> {
        let header: Vec<&str> = header.iter().map(|name| name.as_ref().trim()).collect();
        let find = |field: &str| -> Option<usize> {
            header.iter().position(|name| *name == field).or_else(|| {
                let mut matches = header
                    .iter()
                    .enumerate()
                    .filter(|(_, name)| name.eq_ignore_ascii_case(field));
                match (matches.next(), matches.next()) {
                    (Some((idx, _)), None) => Some(idx),
                    _ => None,
                }
            })
        };
        let missing = |role: &str, field: &str| SchemaError::MissingColumn {
            role: role.to_owned(),
            field: field.to_owned(),
            available: shorten_list(&header),
        };
        let require = |role: &str, field: &str| find(field).ok_or_else(|| missing(role, field));
        let mut notes = Vec::new();
        let id = require("transaction id", &self.config.transaction_id)?;
        let timestamp = require("timestamp", &self.config.timestamp)?;
        let amount = require("amount", &self.config.amount)?;
        let currency = self.config.currency.as_deref().and_then(|field| {
            let found = find(field);
            if found.is_none() {
                notes.push(format!(
                    "currency column {field:?} not found: every amount is in {}",
                    self.config.default_currency
                ));
            }
            found
        });
        let label = self.config.label.as_deref().and_then(|field| {
            let found = find(field);
            if found.is_none() {
                notes.push(format!("label column {field:?} not found: the data is unlabeled"));
            }
            found
        });
        let mut entities = Vec::with_capacity(self.entity_fields.len());
        for (name, entity) in self.entity_names.iter().zip(&self.entity_fields) {
            match find(&entity.field) {
                Some(idx) => entities.push(Some(idx)),
                None if entity.optional => {
                    notes.push(format!("optional entity {name} (column {:?}) not found", entity.field));
                    entities.push(None);
                }
                None => return Err(missing(&format!("entity {name}"), &entity.field)),
            }
        }
        let mut attributes = Vec::with_capacity(self.attribute_fields.len());
        for (name, (field, attribute)) in self.attribute_names.iter().zip(&self.attribute_fields) {
            match find(field) {
                Some(idx) => attributes.push(Some(idx)),
                None if !attribute.required => {
                    notes.push(format!(
                        "attribute {name} (column {field:?}) not found: it stays missing"
                    ));
                    attributes.push(None);
                }
                None => return Err(missing(&format!("attribute {name}"), field)),
            }
        }
        let passthrough = self.config.passthrough.iter().map(|field| find(field)).collect();
        Ok(ColumnBinding {
            id,
            timestamp,
            amount,
            currency,
            label,
            entities,
            attributes,
            passthrough,
            n_columns: header.len(),
            notes,
        })
    }

    /// Parses one CSV row; `cell(i)` returns the `i`-th cell.
    pub fn parse_row<'r>(
        &self,
        binding: &ColumnBinding,
        cell: impl Fn(usize) -> Option<&'r str>,
    ) -> Result<Transaction, RecordError> {
        let get = |column: Option<usize>| -> FieldText<'r> { Ok(column.and_then(&cell).map(Cow::Borrowed)) };
        self.parse_fields(Fields {
            id: get(Some(binding.id)),
            timestamp: get(Some(binding.timestamp)),
            amount: get(Some(binding.amount)),
            currency: get(binding.currency),
            label: get(binding.label),
            entities: binding.entities.iter().map(|c| get(*c)).collect(),
            attributes: binding.attributes.iter().map(|c| get(*c)).collect(),
        })
    }

    /// Parses one JSON object. A field name is looked up as a key first and
    /// then as a dotted path (`payment_method_details.card.fingerprint`).
    pub fn parse_json(&self, record: &serde_json::Value) -> Result<Transaction, RecordError> {
        let get = |field: &str| scalar_text(lookup(record, field));
        self.parse_fields(Fields {
            id: get(&self.config.transaction_id),
            timestamp: get(&self.config.timestamp),
            amount: get(&self.config.amount),
            currency: self.config.currency.as_deref().map_or(Ok(None), get),
            label: self.config.label.as_deref().map_or(Ok(None), get),
            entities: self.entity_fields.iter().map(|entity| get(&entity.field)).collect(),
            attributes: self.attribute_fields.iter().map(|(field, _)| get(field)).collect(),
        })
    }

    /// Values of the passthrough fields of a JSON record, as text.
    pub fn json_passthrough(&self, record: &serde_json::Value) -> Vec<Option<String>> {
        self.config
            .passthrough
            .iter()
            .map(|field| scalar_text(lookup(record, field)).ok().flatten().map(Cow::into_owned))
            .collect()
    }

    fn parse_fields(&self, fields: Fields<'_>) -> Result<Transaction, RecordError> {
        let cfg = &self.config;
        let not_scalar = |role: &str, field: &str| RecordError::NotScalar {
            role: role.into(),
            field: field.into(),
        };
        let id_text = required(fields.id, "transaction id", &cfg.transaction_id)?;
        let id = TransactionId::parse(&id_text).map_err(|source| RecordError::InvalidId {
            field: cfg.transaction_id.clone(),
            source,
        })?;
        let ts_text = required(fields.timestamp, "timestamp", &cfg.timestamp)?;
        let timestamp =
            Timestamp::parse(&ts_text, cfg.timestamp_format).map_err(|source| RecordError::InvalidTimestamp {
                field: cfg.timestamp.clone(),
                source,
            })?;
        let currency_field = cfg.currency.as_deref().unwrap_or("currency");
        let currency = match fields.currency.map_err(|()| not_scalar("currency", currency_field))? {
            Some(text) if !text.trim().is_empty() => {
                Currency::parse(&text).map_err(|source| RecordError::InvalidAmount {
                    field: currency_field.into(),
                    source,
                })?
            }
            _ => cfg.default_currency,
        };
        let amount_text = required(fields.amount, "amount", &cfg.amount)?;
        let amount = match cfg.amount_unit {
            AmountUnit::Major => Amount::parse_major(&amount_text, currency),
            AmountUnit::Minor => Amount::parse_minor(&amount_text, currency),
        }
        .map_err(|source| RecordError::InvalidAmount {
            field: cfg.amount.clone(),
            source,
        })?;
        let label_field = cfg.label.as_deref().unwrap_or("label");
        let label = match fields.label.map_err(|()| not_scalar("label", label_field))? {
            Some(text) if !text.trim().is_empty() => {
                Some(Label::parse(&text).map_err(|source| RecordError::InvalidLabel {
                    field: label_field.into(),
                    source,
                })?)
            }
            _ => None,
        };
        let mut entities = Vec::with_capacity(fields.entities.len());
        for ((name, entity), value) in self.entity_names.iter().zip(&self.entity_fields).zip(fields.entities) {
            let text = match value.map_err(|()| not_scalar(&format!("entity {name}"), &entity.field))? {
                Some(text) if !text.trim().is_empty() => text,
                _ if entity.optional => {
                    entities.push(None);
                    continue;
                }
                _ => {
                    return Err(RecordError::MissingField {
                        role: format!("entity {name}"),
                        field: entity.field.clone(),
                    });
                }
            };
            let key = if entity.card_number {
                // invariant: Schema::new refuses card-number entities without a hasher
                let hasher = self
                    .card_hasher
                    .as_ref()
                    .ok_or_else(|| RecordError::InvalidCardNumber {
                        entity: name.clone(),
                        field: entity.field.clone(),
                    })?;
                let token = hasher.token(&text).ok_or_else(|| RecordError::InvalidCardNumber {
                    entity: name.clone(),
                    field: entity.field.clone(),
                })?;
                EntityKey::parse(&token)
            } else {
                EntityKey::parse(&text)
            }
            .map_err(|source| RecordError::InvalidEntity {
                entity: name.clone(),
                field: entity.field.clone(),
                source,
            })?;
            entities.push(Some(key));
        }
        let mut attributes = Vec::with_capacity(fields.attributes.len());
        for ((name, (field, attribute)), value) in self
            .attribute_names
            .iter()
            .zip(&self.attribute_fields)
            .zip(fields.attributes)
        {
            let text = value.map_err(|()| not_scalar(&format!("attribute {name}"), field))?;
            attributes.push(match attribute.kind {
                AttributeKind::Numeric => match parse_number(text.as_deref().unwrap_or("")) {
                    ParsedNumber::Missing => AttributeValue::Numeric(f64::NAN),
                    ParsedNumber::Value(value) => AttributeValue::Numeric(value),
                    ParsedNumber::Text => {
                        return Err(RecordError::InvalidNumber {
                            attribute: name.clone(),
                            field: field.clone(),
                            value: text.as_deref().unwrap_or("").chars().take(40).collect(),
                        });
                    }
                },
                AttributeKind::Categorical => AttributeValue::Categorical(
                    text.map(|t| t.trim().to_owned())
                        .filter(|t| !crate::tabular::is_missing_token(t)),
                ),
            });
        }
        Ok(Transaction {
            id,
            timestamp,
            amount,
            entities,
            attributes,
            label,
        })
    }
}

/// Raw text of one field: `Ok(None)` when absent, `Err(())` for a non-scalar JSON value.
type FieldText<'a> = Result<Option<Cow<'a, str>>, ()>;

/// Raw text of each role of one record.
struct Fields<'a> {
    id: FieldText<'a>,
    timestamp: FieldText<'a>,
    amount: FieldText<'a>,
    currency: FieldText<'a>,
    label: FieldText<'a>,
    entities: Vec<FieldText<'a>>,
    attributes: Vec<FieldText<'a>>,
}

/// The text of a required field, or why there is none.
fn required<'a>(value: FieldText<'a>, role: &str, field: &str) -> Result<Cow<'a, str>, RecordError> {
    match value {
        Err(()) => Err(RecordError::NotScalar {
            role: role.into(),
            field: field.into(),
        }),
        Ok(Some(text)) if !text.trim().is_empty() => Ok(text),
        Ok(_) => Err(RecordError::MissingField {
            role: role.into(),
            field: field.into(),
        }),
    }
}

fn lookup<'v>(record: &'v serde_json::Value, field: &str) -> Option<&'v serde_json::Value> {
    if let Some(value) = record.get(field) {
        return Some(value);
    }
    let mut value = record;
    for segment in field.split('.') {
        value = match value {
            serde_json::Value::Object(map) => map.get(segment)?,
            serde_json::Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

fn scalar_text(value: Option<&serde_json::Value>) -> Result<Option<Cow<'_, str>>, ()> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(Cow::Borrowed(text))),
        Some(serde_json::Value::Number(number)) => Ok(Some(Cow::Owned(number.to_string()))),
        Some(serde_json::Value::Bool(flag)) => Ok(Some(Cow::Borrowed(if *flag { "true" } else { "false" }))),
        Some(_) => Err(()),
    }
}

fn shorten_list(header: &[&str]) -> String {
    let mut text = header
        .iter()
        .take(20)
        .map(|name| format!("{name:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if header.len() > 20 {
        text.push_str(&format!(" and {} more", header.len() - 20));
    }
    text
}

// Entity and attribute tables accept a short string form; serde's untagged
// enums would turn every typo into "data did not match any variant", so the
// two forms are told apart by hand to keep the underlying error message.
fn entities_de<'de, D: serde::Deserializer<'de>>(de: D) -> Result<BTreeMap<String, EntityField>, D::Error> {
    let raw = BTreeMap::<String, StringOrTable>::deserialize(de)?;
    raw.into_iter()
        .map(|(name, value)| {
            let field = match value {
                StringOrTable::String(field) => EntityField {
                    field,
                    card_number: false,
                    optional: false,
                },
                StringOrTable::Table(table) => {
                    EntityField::deserialize(serde_json::Value::Object(table)).map_err(serde::de::Error::custom)?
                }
            };
            Ok((name, field))
        })
        .collect()
}

fn attributes_de<'de, D: serde::Deserializer<'de>>(de: D) -> Result<BTreeMap<String, AttributeField>, D::Error> {
    let raw = BTreeMap::<String, StringOrTable>::deserialize(de)?;
    raw.into_iter()
        .map(|(name, value)| {
            let field = match value {
                StringOrTable::String(kind) => {
                    let kind = AttributeKind::deserialize(serde_json::Value::String(kind))
                        .map_err(|e| serde::de::Error::custom(format!("attribute {name}: {e}")))?;
                    AttributeField {
                        field: None,
                        kind,
                        required: true,
                    }
                }
                StringOrTable::Table(table) => AttributeField::deserialize(serde_json::Value::Object(table))
                    .map_err(|e| serde::de::Error::custom(format!("attribute {name}: {e}")))?,
            };
            Ok((name, field))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrTable {
    String(String),
    Table(serde_json::Map<String, serde_json::Value>),
}

impl fmt::Display for AttributeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Numeric => "numeric",
            Self::Categorical => "categorical",
        })
    }
}
