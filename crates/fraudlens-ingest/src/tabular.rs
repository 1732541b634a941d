//! Tabular-mode reading: profile every column in one streaming pass, then
//! stream rows encoded by the fitted [`TabularEncoding`].

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use fraudlens_core::Label;
use fraudlens_core::tabular::{ColumnProfile, TabularEncoding, dedupe_header};

use crate::{BadRows, IngestError};

/// What one pass over a tabular CSV found.
#[derive(Debug)]
pub struct TabularProfile {
    /// Header after de-duplication.
    pub header: Vec<String>,
    /// Notes about renamed header cells.
    pub header_notes: Vec<String>,
    /// One profile per column.
    pub columns: Vec<ColumnProfile>,
    /// Rows that were profiled.
    pub n_rows: u64,
    /// Rows with the wrong number of cells or invalid UTF-8.
    pub bad_rows: BadRows,
}

fn open(path: &Path) -> Result<csv::Reader<Box<dyn Read>>, IngestError> {
    let file = File::open(path).map_err(|source| IngestError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(Box::new(file) as Box<dyn Read>))
}

fn read_header(reader: &mut csv::Reader<Box<dyn Read>>, path: &Path) -> Result<Vec<String>, IngestError> {
    let header: Vec<String> = reader
        .headers()
        .map_err(|source| IngestError::Csv {
            path: path.to_owned(),
            source,
        })?
        .iter()
        .map(|name| name.trim_start_matches('\u{feff}').to_owned())
        .collect();
    if header.is_empty() || (header.len() == 1 && header[0].trim().is_empty()) {
        return Err(IngestError::Empty { path: path.to_owned() });
    }
    Ok(header)
}

/// Checks a raw record: right number of cells and valid UTF-8.
fn check_record(record: &csv::ByteRecord, n_columns: usize) -> Result<(), String> {
    if record.len() != n_columns {
        return Err(format!("expected {n_columns} columns, found {}", record.len()));
    }
    if record.iter().any(|field| std::str::from_utf8(field).is_err()) {
        return Err("invalid utf-8".to_owned());
    }
    Ok(())
}

fn cell(record: &csv::ByteRecord, idx: usize) -> Option<&str> {
    record.get(idx).and_then(|bytes| std::str::from_utf8(bytes).ok())
}

/// Profiles every column of a CSV in one streaming pass.
pub fn profile_csv(path: &Path, strict: bool, max_examples: usize) -> Result<TabularProfile, IngestError> {
    let mut reader = open(path)?;
    let raw_header = read_header(&mut reader, path)?;
    let (header, header_notes) = dedupe_header(&raw_header);
    let mut columns: Vec<ColumnProfile> = header.iter().map(ColumnProfile::new).collect();
    let mut bad_rows = BadRows::new(max_examples);
    let mut record = csv::ByteRecord::new();
    let mut n_rows = 0;
    while reader
        .read_byte_record(&mut record)
        .map_err(|source| IngestError::Csv {
            path: path.to_owned(),
            source,
        })?
    {
        let line = record.position().map_or(0, csv::Position::line);
        if let Err(reason) = check_record(&record, header.len()) {
            bad_rows.refuse(strict, path, line, reason)?;
            continue;
        }
        for (idx, column) in columns.iter_mut().enumerate() {
            column.observe(cell(&record, idx).unwrap_or(""));
        }
        n_rows += 1;
    }
    Ok(TabularProfile {
        header,
        header_notes,
        columns,
        n_rows,
        bad_rows,
    })
}

/// Streams rows of a tabular CSV encoded by a fitted [`TabularEncoding`].
pub struct TabularReader<'e> {
    encoding: &'e TabularEncoding,
    path: PathBuf,
    reader: csv::Reader<Box<dyn Read>>,
    record: csv::ByteRecord,
    n_columns: usize,
    feature_columns: Vec<Option<usize>>,
    label_column: Option<usize>,
    bad_rows: BadRows,
    strict: bool,
    line: u64,
}

impl<'e> TabularReader<'e> {
    /// Opens `path`; columns are found by their (de-duplicated) header names.
    /// Feature columns absent from the file read as missing.
    pub fn open(
        path: &Path,
        encoding: &'e TabularEncoding,
        strict: bool,
        max_examples: usize,
    ) -> Result<Self, IngestError> {
        let mut reader = open(path)?;
        let (header, _) = dedupe_header(&read_header(&mut reader, path)?);
        let feature_columns = encoding.bind(&header);
        let label_column = encoding
            .label
            .as_ref()
            .and_then(|label| header.iter().position(|h| h == label));
        Ok(Self {
            encoding,
            path: path.to_owned(),
            reader,
            record: csv::ByteRecord::new(),
            n_columns: header.len(),
            feature_columns,
            label_column,
            bad_rows: BadRows::new(max_examples),
            strict,
            line: 0,
        })
    }

    /// Encodes the next good row into `out` and returns its label (if the file
    /// has the label column); `Ok(None)` at the end.
    pub fn next_row(&mut self, out: &mut Vec<f64>) -> Result<Option<Option<Label>>, IngestError> {
        loop {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|source| IngestError::Csv {
                    path: self.path.clone(),
                    source,
                })?;
            if !more {
                return Ok(None);
            }
            self.line = self.record.position().map_or(0, csv::Position::line);
            let record = &self.record;
            let columns = &self.feature_columns;
            let result = check_record(record, self.n_columns).and_then(|()| {
                self.encoding
                    .encode_row(|idx| columns[idx].and_then(|column| cell(record, column)), out)
                    .map_err(|error| error.to_string())?;
                self.encoding
                    .parse_label(self.label_column.and_then(|column| cell(record, column)))
                    .map_err(|error| error.to_string())
            });
            match result {
                Ok(label) => return Ok(Some(label)),
                Err(reason) => self.bad_rows.refuse(self.strict, &self.path, self.line, reason)?,
            }
        }
    }

    /// Line where the current row starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Refused rows so far.
    pub fn bad_rows(&self) -> &BadRows {
        &self.bad_rows
    }
}
