//! Tabular-mode reading: profile every column in one streaming pass, then
//! stream rows encoded by the fitted [`TabularEncoding`].

use std::fs::File;
use std::path::{Path, PathBuf};

use fraudlens_core::Label;
use fraudlens_core::tabular::{ColumnProfile, TabularEncoding, dedupe_header};

use crate::csv_input::{self, check_record};
use crate::lines::LineIndex;
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

fn open(path: &Path) -> Result<(csv_input::Reader, LineIndex), IngestError> {
    let file = File::open(path).map_err(|cause| IngestError::Io {
        path: path.to_owned(),
        cause,
    })?;
    Ok(csv_input::reader(Box::new(file)))
}

/// Profiles every column of a CSV in one streaming pass.
pub fn profile_csv(path: &Path, strict: bool, max_examples: usize) -> Result<TabularProfile, IngestError> {
    let (mut reader, lines) = open(path)?;
    let (header, header_notes) = dedupe_header(&csv_input::header(&mut reader, path)?);
    let mut columns: Vec<ColumnProfile> = header.iter().map(ColumnProfile::new).collect();
    let mut bad_rows = BadRows::new(max_examples);
    let mut record = csv::ByteRecord::new();
    let mut n_rows = 0;
    while reader.read_byte_record(&mut record).map_err(|cause| IngestError::Csv {
        path: path.to_owned(),
        cause,
    })? {
        let line = lines.line_of(record.position().map_or(0, csv::Position::byte));
        if let Err(reason) = check_record(&record, header.len()) {
            bad_rows.refuse(strict, path, line, reason)?;
            continue;
        }
        for (idx, column) in columns.iter_mut().enumerate() {
            column.observe(csv_input::cell(&record, idx).unwrap_or(""));
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
    reader: csv_input::Reader,
    lines: LineIndex,
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
        let (mut reader, lines) = open(path)?;
        let (header, _) = dedupe_header(&csv_input::header(&mut reader, path)?);
        let feature_columns = encoding.bind(&header);
        let label_column = encoding
            .label
            .as_ref()
            .and_then(|label| header.iter().position(|h| h == label));
        Ok(Self {
            encoding,
            path: path.to_owned(),
            reader,
            lines,
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
                .map_err(|cause| IngestError::Csv {
                    path: self.path.clone(),
                    cause,
                })?;
            if !more {
                return Ok(None);
            }
            self.line = self
                .lines
                .line_of(self.record.position().map_or(0, csv::Position::byte));
            let record = &self.record;
            let columns = &self.feature_columns;
            let result = check_record(record, self.n_columns).and_then(|()| {
                self.encoding
                    .encode_row(
                        |idx| columns[idx].and_then(|column| csv_input::cell(record, column)),
                        out,
                    )
                    .map_err(|error| error.to_string())?;
                self.encoding
                    .parse_label(self.label_column.and_then(|column| csv_input::cell(record, column)))
                    .map_err(|error| error.to_string())
            });
            match result {
                Ok(label) => return Ok(Some(label)),
                Err(reason) => self.bad_rows.refuse(self.strict, &self.path, self.line, reason)?,
            }
        }
    }

    /// Refused rows so far.
    pub fn bad_rows(&self) -> &BadRows {
        &self.bad_rows
    }

    /// Refuses the row just read, for a reason found after reading it (the
    /// model cannot take it): reported with its line like the others, or an
    /// error when strict.
    pub fn refuse_last(&mut self, reason: String) -> Result<(), IngestError> {
        self.bad_rows.refuse(self.strict, &self.path, self.line, reason)
    }
}
