//! Event-mode reading: records become [`Transaction`]s through a [`Schema`].

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use fraudlens_core::{ColumnBinding, Schema, Transaction};

use crate::lines::LineIndex;
use crate::{BadRows, IngestError, csv_input};

/// Longest JSON line accepted; longer lines are refused without being held in memory.
pub const MAX_JSON_LINE: usize = 1 << 20;

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
        // boxed: the csv reader is large and one reader exists per file
        reader: Box<csv_input::Reader>,
        lines: LineIndex,
        binding: ColumnBinding,
        record: csv::ByteRecord,
    },
    JsonLines {
        reader: BufReader<Box<dyn Read + Send>>,
        buffer: Vec<u8>,
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
        let input: Box<dyn Read + Send> = if path == Path::new("-") {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(path).map_err(|cause| IngestError::Io {
                path: path.to_owned(),
                cause,
            })?)
        };
        Self::from_reader(input, path, format, schema, strict, max_examples)
    }

    /// Reads from any byte source; `path` names it in messages.
    pub fn from_reader(
        input: Box<dyn Read + Send>,
        path: &Path,
        format: InputFormat,
        schema: &'s Schema,
        strict: bool,
        max_examples: usize,
    ) -> Result<Self, IngestError> {
        let source = match format {
            InputFormat::Csv => {
                let (mut reader, lines) = csv_input::reader(input);
                let header = csv_input::header(&mut reader, path)?;
                let binding = schema.bind_columns(&header).map_err(|cause| IngestError::Schema {
                    path: path.to_owned(),
                    cause,
                })?;
                Source::Csv {
                    reader: Box::new(reader),
                    lines,
                    binding,
                    record: csv::ByteRecord::new(),
                }
            }
            InputFormat::JsonLines => Source::JsonLines {
                reader: BufReader::with_capacity(1 << 16, input),
                buffer: Vec::new(),
                value: serde_json::Value::Null,
                next_line: 1,
            },
        };
        Ok(Self {
            schema,
            path: path.to_owned(),
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
                    lines,
                    binding,
                    record,
                } => {
                    match reader.read_byte_record(record) {
                        Ok(false) => return Ok(None),
                        Ok(true) => {}
                        Err(cause) => {
                            return Err(IngestError::Csv {
                                path: self.path.clone(),
                                cause,
                            });
                        }
                    }
                    self.line = lines.line_of(record.position().map_or(0, csv::Position::byte));
                    csv_input::check_record(record, binding.n_columns()).and_then(|()| {
                        self.schema
                            .parse_row(binding, |idx| csv_input::cell(record, idx))
                            .map_err(|error| error.to_string())
                    })
                }
                Source::JsonLines {
                    reader,
                    buffer,
                    value,
                    next_line,
                } => {
                    self.line = *next_line;
                    match read_json_line(reader, buffer).map_err(|cause| IngestError::Io {
                        path: self.path.clone(),
                        cause,
                    })? {
                        JsonLine::End => return Ok(None),
                        JsonLine::Blank => {
                            *next_line += 1;
                            continue;
                        }
                        JsonLine::TooLong => {
                            *next_line += 1;
                            Err(format!("line longer than {} bytes", MAX_JSON_LINE))
                        }
                        JsonLine::Text => {
                            *next_line += 1;
                            parse_json_object(buffer, value)
                                .and_then(|()| self.schema.parse_json(value).map_err(|error| error.to_string()))
                        }
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
                .map(|column| column.and_then(|idx| csv_input::cell(record, idx)).map(str::to_owned))
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

enum JsonLine {
    End,
    Blank,
    TooLong,
    Text,
}

/// Reads one line into `buffer` without ever holding more than [`MAX_JSON_LINE`] bytes of it.
fn read_json_line(reader: &mut impl BufRead, buffer: &mut Vec<u8>) -> std::io::Result<JsonLine> {
    buffer.clear();
    let n = reader
        .by_ref()
        .take(MAX_JSON_LINE as u64 + 1)
        .read_until(b'\n', buffer)?;
    if n == 0 {
        return Ok(JsonLine::End);
    }
    if buffer.len() > MAX_JSON_LINE && buffer.last() != Some(&b'\n') {
        // skip the rest of the line
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    reader.consume(end + 1);
                    break;
                }
                None => {
                    let len = chunk.len();
                    reader.consume(len);
                }
            }
        }
        return Ok(JsonLine::TooLong);
    }
    Ok(if buffer.iter().all(u8::is_ascii_whitespace) {
        JsonLine::Blank
    } else {
        JsonLine::Text
    })
}

fn parse_json_object(line: &[u8], value: &mut serde_json::Value) -> Result<(), String> {
    // json::parse checks the UTF-8 itself (an invalid byte is a syntax error)
    match fraudlens_core::json::parse(line) {
        Ok(parsed) if parsed.is_object() => {
            *value = parsed;
            Ok(())
        }
        Ok(serde_json::Value::Array(_)) => {
            Err("expected a json object per line, found an array (convert with: jq -c '.[]')".to_owned())
        }
        Ok(_) => Err("expected a json object".to_owned()),
        // only a failed line is checked for UTF-8, to name the reason
        Err(_) if std::str::from_utf8(line).is_err() => Err("invalid utf-8".to_owned()),
        Err(error) if line.trim_ascii_start().starts_with(b"[") => Err(format!(
            "expected a json object per line, found the start of an array ({error})"
        )),
        Err(error) => Err(error.to_string()),
    }
}
