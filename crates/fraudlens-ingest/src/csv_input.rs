//! What CSV reading shares between event and tabular mode.

use std::io::Read;
use std::path::Path;

use crate::IngestError;
use crate::lines::{LineCounting, LineIndex, line_counting};

/// A CSV reader whose records can be mapped to line numbers.
pub(crate) type Reader = csv::Reader<LineCounting<Box<dyn Read + Send>>>;

/// A flexible reader (rows of the wrong length are reported, not fatal) with its line index.
pub(crate) fn reader(input: Box<dyn Read + Send>) -> (Reader, LineIndex) {
    let (input, lines) = line_counting(input);
    (
        csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(input),
        lines,
    )
}

/// The header, without a byte-order mark; an empty file is an error.
pub(crate) fn header(reader: &mut Reader, path: &Path) -> Result<Vec<String>, IngestError> {
    let header: Vec<String> = reader
        .headers()
        .map_err(|cause| IngestError::Csv {
            path: path.to_owned(),
            cause,
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
pub(crate) fn check_record(record: &csv::ByteRecord, n_columns: usize) -> Result<(), String> {
    if record.len() != n_columns {
        return Err(format!("expected {n_columns} columns, found {}", record.len()));
    }
    if record.iter().any(|field| std::str::from_utf8(field).is_err()) {
        return Err("invalid utf-8".to_owned());
    }
    Ok(())
}

/// The `idx`-th cell as text (records are checked for UTF-8 first).
pub(crate) fn cell(record: &csv::ByteRecord, idx: usize) -> Option<&str> {
    record.get(idx).and_then(|bytes| std::str::from_utf8(bytes).ok())
}

/// The records of a CSV byte stream (an upload's body) with the lines they
/// start on, counted as the file readers count them (CRLF, blank lines).
pub struct CsvRecords {
    reader: Reader,
    lines: LineIndex,
    record: csv::ByteRecord,
}

impl CsvRecords {
    /// Reads `input`: a header row, then records of any length.
    pub fn new(input: Box<dyn Read + Send>) -> Self {
        let (reader, lines) = reader(input);
        Self {
            reader,
            lines,
            record: csv::ByteRecord::new(),
        }
    }

    /// The header's cells as bytes (a byte-order mark is the caller's to strip).
    pub fn header(&mut self) -> Result<csv::ByteRecord, csv::Error> {
        self.reader.byte_headers().cloned()
    }

    /// The next record and its first line; `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<(u64, &csv::ByteRecord)>, csv::Error> {
        if !self.reader.read_byte_record(&mut self.record)? {
            return Ok(None);
        }
        let line = self
            .lines
            .line_of(self.record.position().map_or(0, csv::Position::byte));
        Ok(Some((line, &self.record)))
    }
}
