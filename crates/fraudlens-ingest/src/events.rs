//! Event-mode reading: records become [`Transaction`]s through a [`Schema`].

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use fraudlens_core::{ColumnBinding, Schema, Transaction};

use crate::{BadRows, IngestError};

/// How records are written in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl InputFormat {
    /// JSON lines for `.jsonl`, `.ndjson` and `.json` files, CSV otherwise.
    pub fn from_path(path: &Path) -> Self {
        match path
            .extension()
            .and_then(|ext| ext.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("jsonl" | "ndjson" | "json") => Self::JsonLines,
            _ => Self::Csv,
        }
    }
}

/// Streams transactions out of a CSV or JSON-lines source.
pub struct EventReader<'s> {
    schema: &'s Schema,
    path: PathBuf,
    source: Source,
    bad_rows: BadRows,
    strict: bool,
    /// Line where the current record starts.
    line: u64,
    n_good: u64,
}

enum Source {
    Csv {
        reader: csv::Reader<Box<dyn Read>>,
        binding: ColumnBinding,
        record: csv::ByteRecord,
    },
    JsonLines {
        reader: BufReader<Box<dyn Read>>,
        buffer: String,
        value: serde_json::Value,
        next_line: u64,
    },
}

impl<'s> EventReader<'s> {
    /// Opens `path` (`-` is standard input).
    pub fn open(
        path: &Path,
        format: InputFormat,
        schema: &'s Schema,
        strict: bool,
        max_examples: usize,
    ) -> Result<Self, IngestError> {
        let input: Box<dyn Read> = if path == Path::new("-") {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(File::open(path).map_err(|source| IngestError::Io {
                path: path.to_owned(),
                source,
            })?)
        };
        Self::from_reader(input, path, format, schema, strict, max_examples)
    }

    /// Reads from any byte source; `path` names it in messages.
    pub fn from_reader(
        input: Box<dyn Read>,
        path: &Path,
        format: InputFormat,
        schema: &'s Schema,
        strict: bool,
        max_examples: usize,
    ) -> Result<Self, IngestError> {
        let path = path.to_owned();
        let source = match format {
            InputFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .flexible(true)
                    .has_headers(true)
                    .from_reader(input);
                let header = reader
                    .headers()
                    .map_err(|source| IngestError::Csv {
                        path: path.clone(),
                        source,
                    })?
                    .iter()
                    .map(|name| name.trim_start_matches('\u{feff}').to_owned())
                    .collect::<Vec<_>>();
                if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
                    return Err(IngestError::Empty { path });
                }
                let binding = schema.bind_columns(&header).map_err(|source| IngestError::Schema {
                    path: path.clone(),
                    source,
                })?;
                Source::Csv {
                    reader,
                    binding,
                    record: csv::ByteRecord::new(),
                }
            }
            InputFormat::JsonLines => Source::JsonLines {
                reader: BufReader::with_capacity(1 << 16, input),
                buffer: String::new(),
                value: serde_json::Value::Null,
                next_line: 1,
            },
        };
        Ok(Self {
            schema,
            path,
            source,
            bad_rows: BadRows::new(max_examples),
            strict,
            line: 0,
            n_good: 0,
        })
    }

    /// The next good transaction; bad records are recorded and skipped (or,
    /// when strict, returned as an error). `Ok(None)` at the end.
    pub fn next_transaction(&mut self) -> Result<Option<Transaction>, IngestError> {
        loop {
            let parsed = match &mut self.source {
                Source::Csv {
                    reader,
                    binding,
                    record,
                } => {
                    match reader.read_byte_record(record) {
                        Ok(false) => return Ok(None),
                        Ok(true) => {}
                        Err(source) => {
                            return Err(IngestError::Csv {
                                path: self.path.clone(),
                                source,
                            });
                        }
                    }
                    self.line = record.position().map_or(0, csv::Position::line);
                    if record.len() != binding.n_columns() {
                        Err(format!(
                            "expected {} columns, found {}",
                            binding.n_columns(),
                            record.len()
                        ))
                    } else if record.iter().any(|field| std::str::from_utf8(field).is_err()) {
                        Err("invalid utf-8".to_owned())
                    } else {
                        self.schema
                            .parse_row(binding, |idx| {
                                record.get(idx).and_then(|field| std::str::from_utf8(field).ok())
                            })
                            .map_err(|error| error.to_string())
                    }
                }
                Source::JsonLines {
                    reader,
                    buffer,
                    value,
                    next_line,
                } => {
                    buffer.clear();
                    self.line = *next_line;
                    let n_bytes = reader.read_line(buffer).map_err(|source| IngestError::Io {
                        path: self.path.clone(),
                        source,
                    })?;
                    if n_bytes == 0 {
                        return Ok(None);
                    }
                    *next_line += 1;
                    if buffer.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<serde_json::Value>(buffer) {
                        Ok(parsed) if parsed.is_object() => {
                            *value = parsed;
                            self.schema.parse_json(value).map_err(|error| error.to_string())
                        }
                        Ok(_) => Err("expected a json object".to_owned()),
                        Err(error) => Err(format!("invalid json: {error}")),
                    }
                }
            };
            match parsed {
                Ok(transaction) => {
                    self.n_good += 1;
                    return Ok(Some(transaction));
                }
                Err(reason) => self.bad_rows.refuse(self.strict, &self.path, self.line, reason)?,
            }
        }
    }

    /// Passthrough field values of the current record, in schema order.
    pub fn passthrough(&self) -> Vec<Option<String>> {
        match &self.source {
            Source::Csv { binding, record, .. } => binding
                .passthrough_columns()
                .iter()
                .map(|column| {
                    column
                        .and_then(|idx| record.get(idx))
                        .and_then(|bytes| std::str::from_utf8(bytes).ok())
                        .map(str::to_owned)
                })
                .collect(),
            Source::JsonLines { value, .. } => self.schema.json_passthrough(value),
        }
    }

    /// Line where the current record starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Refused records so far.
    pub fn bad_rows(&self) -> &BadRows {
        &self.bad_rows
    }

    /// Good records so far.
    pub fn n_good(&self) -> u64 {
        self.n_good
    }

    /// Notes from binding the CSV header (optional columns not found).
    pub fn notes(&self) -> &[String] {
        match &self.source {
            Source::Csv { binding, .. } => binding.notes(),
            Source::JsonLines { .. } => &[],
        }
    }
}
