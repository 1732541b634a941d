//! The bad-row report: a count and the first few examples.

use std::fmt;
use std::path::Path;

use crate::IngestError;

/// One refused record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowIssue {
    /// 1-based line number where the record starts.
    pub line: u64,
    /// Why it was refused (lowercase, never the clear value of a card number).
    pub reason: String,
}

/// Refused records of one read: how many, and the first `max_examples`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRows {
    count: u64,
    examples: Vec<RowIssue>,
    max_examples: usize,
}

impl BadRows {
    /// Keeps at most `max_examples` examples.
    pub fn new(max_examples: usize) -> Self {
        Self {
            count: 0,
            examples: Vec::new(),
            max_examples,
        }
    }

    /// Records one refused record.
    pub fn push(&mut self, line: u64, reason: String) {
        self.count += 1;
        if self.examples.len() < self.max_examples {
            self.examples.push(RowIssue { line, reason });
        }
    }

    /// Refuses a record: an error in strict mode, else counted and kept as an example.
    pub(crate) fn refuse(&mut self, strict: bool, path: &Path, line: u64, reason: String) -> Result<(), IngestError> {
        if strict {
            return Err(IngestError::Strict {
                path: path.to_owned(),
                line,
                reason,
            });
        }
        self.push(line, reason);
        Ok(())
    }

    /// Number of refused records.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The first refused records.
    pub fn examples(&self) -> &[RowIssue] {
        &self.examples
    }
}

impl fmt::Display for BadRows {
    /// `3 bad rows skipped (first 3 shown):` then one `  line N: reason` per example.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.count == 1 { "row" } else { "rows" };
        write!(f, "{} bad {noun} skipped", self.count)?;
        if self.count > 0 {
            write!(f, " (first {} shown):", self.examples.len())?;
        }
        for issue in &self.examples {
            write!(f, "\n  line {}: {}", issue.line, issue.reason)?;
        }
        Ok(())
    }
}
