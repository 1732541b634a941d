//! The feature matrix as CSV: one row per replayed transaction (id, time,
//! features, attributes, label, passthrough fields), written by the visitor
//! of [`replay_file`] ([`write_feature_matrix`]), or one row per encoded
//! tabular row ([`TabularMatrixWriter`]); [`write_number`] is the one way a
//! feature value is written, in event and tabular mode alike.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use fraudlens_core::tabular::TabularEncoding;
use fraudlens_core::{AttributeValue, Label, Schema, Transaction};
use fraudlens_features::FeatureSpec;

use crate::{GroupBy, GroupSummary, IngestError, ReadOptions, ReplaySummary, replay_file};

/// Reading or writing a feature matrix failed.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The input could not be read.
    #[error(transparent)]
    Read(#[from] IngestError),
    /// The matrix could not be written.
    #[error("writing csv output: {0}")]
    Write(#[from] csv::Error),
}

/// Replays `data` ([`replay_file`]) and writes its feature matrix with
/// `writer`; with `summary`, each row is added to its group too.
pub fn write_feature_matrix<W: std::io::Write>(
    schema: &Schema,
    spec: Arc<FeatureSpec>,
    data: &Path,
    options: ReadOptions,
    now_ms: i64,
    writer: &mut FeatureMatrixWriter<W>,
    mut summary: Option<(GroupBy, &mut GroupSummary)>,
) -> Result<ReplaySummary, MatrixError> {
    replay_file(schema, spec, data, options, now_ms, |tx, passthrough, features| {
        writer.write_row(tx, passthrough, features)?;
        if let Some((group_by, summary)) = summary.as_mut() {
            summary.add(group_by.group(tx, passthrough), features);
        }
        Ok::<_, MatrixError>(())
    })
}

/// Writes the feature matrix of an event file to `W`.
pub struct FeatureMatrixWriter<W: std::io::Write> {
    writer: csv::Writer<W>,
    /// Scratch for the timestamp.
    cell: String,
}

impl<W: std::io::Write> FeatureMatrixWriter<W> {
    /// Writes the header: `transaction_id`, `timestamp`, the features, the
    /// schema's attributes, the label (the schema's name, else `label`) and
    /// the passthrough fields.
    pub fn new(inner: W, schema: &Schema, feature_names: &[String]) -> csv::Result<Self> {
        let mut writer = csv::Writer::from_writer(inner);
        let label_name = schema.config().label.clone().unwrap_or_else(|| "label".to_owned());
        let header = ["transaction_id", "timestamp"]
            .into_iter()
            .map(str::to_owned)
            .chain(feature_names.iter().cloned())
            .chain(schema.attribute_names().iter().cloned())
            .chain([label_name])
            .chain(schema.config().passthrough.iter().cloned());
        writer.write_record(header)?;
        Ok(Self {
            writer,
            cell: String::new(),
        })
    }

    /// Writes the row of one transaction, as [`replay_file`](crate::replay_file) visits it.
    pub fn write_row(&mut self, tx: &Transaction, passthrough: &[Option<String>], features: &[f64]) -> csv::Result<()> {
        let writer = &mut self.writer;
        writer.write_field(tx.id.as_str())?;
        self.cell.clear();
        let _ = write!(self.cell, "{}", tx.timestamp);
        writer.write_field(&self.cell)?;
        for value in features {
            write_number(writer, *value)?;
        }
        for attribute in &tx.attributes {
            match attribute {
                AttributeValue::Numeric(value) => write_number(writer, *value)?,
                AttributeValue::Categorical(value) => writer.write_field(value.as_deref().unwrap_or(""))?,
            }
        }
        writer.write_field(match tx.label {
            Some(Label::Fraud) => "1",
            Some(Label::Legit) => "0",
            None => "",
        })?;
        for value in passthrough {
            writer.write_field(value.as_deref().unwrap_or(""))?;
        }
        writer.write_record(None::<&[u8]>)
    }

    /// Flushes and returns the output.
    pub fn into_inner(self) -> std::io::Result<W> {
        self.writer.into_inner().map_err(csv::IntoInnerError::into_error)
    }
}

/// Writes a feature value: empty when missing, whole numbers without a
/// fraction (counts), others in the shortest form that reads back exactly.
pub fn write_number<W: std::io::Write>(writer: &mut csv::Writer<W>, value: f64) -> csv::Result<()> {
    if value.is_nan() {
        return writer.write_field("");
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return writer.write_field(itoa::Buffer::new().format(value as i64));
    }
    writer.write_field(ryu::Buffer::new().format(value))
}

/// Writes the encoded matrix of a tabular file to `W`: the feature columns,
/// then the label (`1`, `0` or empty).
pub struct TabularMatrixWriter<W: std::io::Write> {
    writer: csv::Writer<W>,
}

impl<W: std::io::Write> TabularMatrixWriter<W> {
    /// Writes the header: the encoding's feature names, then its label's name (else `label`).
    pub fn new(inner: W, encoding: &TabularEncoding) -> csv::Result<Self> {
        let mut writer = csv::Writer::from_writer(inner);
        let label_name = encoding.label.as_deref().unwrap_or("label");
        writer.write_record(encoding.feature_names().chain([label_name]))?;
        Ok(Self { writer })
    }

    /// Writes one encoded row and its label.
    pub fn write_row(&mut self, row: &[f64], label: Option<Label>) -> csv::Result<()> {
        for value in row {
            write_number(&mut self.writer, *value)?;
        }
        self.writer.write_field(match label {
            Some(Label::Fraud) => "1",
            Some(Label::Legit) => "0",
            None => "",
        })?;
        self.writer.write_record(None::<&[u8]>)
    }

    /// Flushes and returns the output.
    pub fn into_inner(self) -> std::io::Result<W> {
        self.writer.into_inner().map_err(csv::IntoInnerError::into_error)
    }
}
