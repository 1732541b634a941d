//! What the model reads: how a transaction (or a tabular row) becomes the
//! model's input row. Fitted at training time, saved in the artifact and
//! applied unchanged when scoring.
//!
//! In event mode the row is the feature engine's vector followed by the
//! schema's attributes (numbers as they are, categories as codes of an
//! encoder fitted on the training rows). In tabular mode it is the fitted
//! [`TabularEncoding`].

use std::sync::Arc;

use fraudlens_core::tabular::{CategoryEncoder, ColumnKind, TabularEncoding};
use fraudlens_core::{AttributeValue, Schema, SchemaConfig, Secret, Transaction};
use fraudlens_features::{FeatureSpec, FeatureSpecConfig};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::train::FeatureKind;

/// Most category codes an attribute encoder keeps (the rest share "other").
pub const MAX_CATEGORIES: usize = 200;

/// How the model's input row is built.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum InputSpec {
    /// Transactions through the schema and the feature engine.
    Events {
        /// The schema the model was trained with.
        schema: SchemaConfig,
        /// The feature spec the model was trained with.
        features: FeatureSpecConfig,
        /// Encoding of each schema attribute, in schema order.
        attributes: Vec<AttributeEncoding>,
    },
    /// Rows whose columns already are features.
    Tabular {
        /// The fitted encoding.
        encoding: TabularEncoding,
    },
}

/// How one schema attribute enters the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttributeEncoding {
    /// A number, as it is.
    Numeric {
        /// Attribute name.
        name: String,
    },
    /// A category, as a code.
    Categorical {
        /// Attribute name.
        name: String,
        /// Codes fitted on the training rows.
        encoder: CategoryEncoder,
    },
}

impl AttributeEncoding {
    /// Attribute name.
    pub fn name(&self) -> &str {
        match self {
            Self::Numeric { name } | Self::Categorical { name, .. } => name,
        }
    }
}

#[cfg(test)]
impl InputSpec {
    /// Tabular inputs of numeric columns `names`, for the tests.
    pub(crate) fn numeric(names: &[&str]) -> Self {
        let features = names
            .iter()
            .map(|name| fraudlens_core::tabular::TabularFeature {
                name: (*name).to_owned(),
                kind: ColumnKind::Numeric,
            })
            .collect();
        Self::Tabular {
            encoding: TabularEncoding {
                format_version: TabularEncoding::FORMAT_VERSION,
                label: None,
                features,
                excluded: Vec::new(),
            },
        }
    }
}

impl InputSpec {
    /// Names of the model inputs, in order.
    pub fn feature_names(&self) -> Result<Vec<String>, ModelError> {
        Ok(match self {
            Self::Events { .. } => {
                let prepared = self.prepare_events(None)?;
                let mut names = prepared.spec.feature_names().to_vec();
                names.extend(prepared.attributes.iter().map(|a| a.name().to_owned()));
                names
            }
            Self::Tabular { encoding } => encoding.feature_names().map(str::to_owned).collect(),
        })
    }

    /// Kinds of the model inputs, in order.
    pub fn feature_kinds(&self) -> Result<Vec<FeatureKind>, ModelError> {
        let kind_of_encoder = |encoder: &CategoryEncoder| FeatureKind::Categorical {
            n_codes: encoder.categories().len() + 1,
        };
        Ok(match self {
            Self::Events { attributes, .. } => {
                let prepared = self.prepare_events(None)?;
                let mut kinds = vec![FeatureKind::Numeric; prepared.spec.feature_names().len()];
                kinds.extend(attributes.iter().map(|attribute| match attribute {
                    AttributeEncoding::Numeric { .. } => FeatureKind::Numeric,
                    AttributeEncoding::Categorical { encoder, .. } => kind_of_encoder(encoder),
                }));
                kinds
            }
            Self::Tabular { encoding } => encoding
                .features
                .iter()
                .map(|feature| match &feature.kind {
                    ColumnKind::Categorical(encoder) => kind_of_encoder(encoder),
                    _ => FeatureKind::Numeric,
                })
                .collect(),
        })
    }

    /// The category encoder of each of the first `n_inputs` model inputs
    /// (`None` for numeric inputs). Cheap: no schema is built.
    pub fn encoders(&self, n_inputs: usize) -> Vec<Option<&CategoryEncoder>> {
        match self {
            Self::Events { attributes, .. } => {
                // engine features come first, then the attributes
                let n_engine = n_inputs.saturating_sub(attributes.len());
                let mut encoders = vec![None; n_engine];
                encoders.extend(attributes.iter().map(|attribute| match attribute {
                    AttributeEncoding::Categorical { encoder, .. } => Some(encoder),
                    AttributeEncoding::Numeric { .. } => None,
                }));
                encoders
            }
            Self::Tabular { encoding } => encoding
                .features
                .iter()
                .map(|feature| match &feature.kind {
                    ColumnKind::Categorical(encoder) => Some(encoder),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The schema, feature spec and attribute encoders of event mode, checked
    /// against each other. `card_hash_key` is needed when the schema hashes
    /// card numbers and transactions will be parsed.
    pub fn prepare_events(&self, card_hash_key: Option<&Secret>) -> Result<EventInputs, ModelError> {
        let Self::Events {
            schema,
            features,
            attributes,
        } = self
        else {
            return Err(ModelError::invalid("the model reads tabular rows, not transactions"));
        };
        let schema = Schema::new(schema.clone(), card_hash_key)
            .map_err(|error| ModelError::invalid(format!("schema of the model: {error}")))?;
        let spec = FeatureSpec::new(features.clone(), &schema)
            .map_err(|error| ModelError::invalid(format!("feature spec of the model: {error}")))?;
        let names: Vec<&str> = attributes.iter().map(AttributeEncoding::name).collect();
        if names != schema.attribute_names().iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(ModelError::invalid(format!(
                "attribute encoders {names:?} do not match the schema's attributes {:?}",
                schema.attribute_names()
            )));
        }
        Ok(EventInputs {
            schema,
            spec: Arc::new(spec),
            attributes: attributes.clone(),
        })
    }
}

/// Event-mode inputs ready to use.
#[derive(Clone, Debug)]
pub struct EventInputs {
    /// The parsed schema.
    pub schema: Schema,
    /// The feature spec.
    pub spec: Arc<FeatureSpec>,
    /// Attribute encoders in schema order.
    pub attributes: Vec<AttributeEncoding>,
}

impl EventInputs {
    /// Appends the encoded attributes of `tx` to `row` (after the engine features).
    pub fn push_attributes(&self, tx: &Transaction, row: &mut Vec<f64>) {
        for (encoding, value) in self.attributes.iter().zip(&tx.attributes) {
            row.push(match (encoding, value) {
                (AttributeEncoding::Numeric { .. }, AttributeValue::Numeric(value)) => *value,
                (AttributeEncoding::Categorical { encoder, .. }, AttributeValue::Categorical(value)) => {
                    encoder.encode(value.as_deref())
                }
                // the schema fixes each attribute's kind, so this cannot happen
                _ => f64::NAN,
            });
        }
    }
}
