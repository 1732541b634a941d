//! Line numbers of CSV records. The csv crate's own line counter is off for
//! CRLF files and after blank lines, so the byte source is wrapped to remember
//! where the line breaks are; a record's start offset then maps to its line.
//! Only breaks not yet passed by the reader are kept, so memory stays bounded
//! by the reader's buffer, not the file.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

/// Byte source that records the offsets of `\r` and `\n`.
pub(crate) struct LineCounting<R> {
    inner: R,
    offset: u64,
    breaks: Arc<Mutex<Breaks>>,
}

/// Maps record start offsets to line numbers.
#[derive(Clone)]
pub(crate) struct LineIndex {
    breaks: Arc<Mutex<Breaks>>,
}

#[derive(Default)]
struct Breaks {
    /// Offsets and bytes of line-break characters not yet passed.
    pending: VecDeque<(u64, u8)>,
    /// `\n` already passed.
    newlines_before: u64,
}

/// Wraps `inner`; the index answers for records read through the wrapper.
pub(crate) fn line_counting<R: Read>(inner: R) -> (LineCounting<R>, LineIndex) {
    let breaks = Arc::new(Mutex::new(Breaks::default()));
    (
        LineCounting {
            inner,
            offset: 0,
            breaks: breaks.clone(),
        },
        LineIndex { breaks },
    )
}

impl<R: Read> Read for LineCounting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut breaks = self.breaks.lock().unwrap_or_else(PoisonError::into_inner);
        for (idx, byte) in buf[..n].iter().enumerate() {
            if *byte == b'\n' || *byte == b'\r' {
                breaks.pending.push_back((self.offset + idx as u64, *byte));
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl LineIndex {
    /// 1-based line of the record whose raw bytes start at `byte` (which may
    /// point at line breaks before the record's first character). Records must
    /// be asked for in file order.
    pub(crate) fn line_of(&self, byte: u64) -> u64 {
        let mut breaks = self.breaks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cursor = byte;
        while let Some(&(offset, kind)) = breaks.pending.front() {
            if offset < cursor {
                breaks.newlines_before += u64::from(kind == b'\n');
            } else if offset == cursor {
                // a break right at the start belongs before the record
                breaks.newlines_before += u64::from(kind == b'\n');
                cursor += 1;
            } else {
                break;
            }
            breaks.pending.pop_front();
        }
        breaks.newlines_before + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &str) -> Vec<u64> {
        let (input, index) = line_counting(data.as_bytes());
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let mut record = csv::ByteRecord::new();
        let mut lines = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            lines.push(index.line_of(record.position().unwrap().byte()));
        }
        lines
    }

    #[test]
    fn line_numbers_with_crlf_blank_lines_and_quoted_breaks() {
        assert_eq!(lines("a,b\n1,2\n\n3,4\n5,6\n"), [2, 4, 5]);
        assert_eq!(lines("a,b\r\n1,2\r\n3,4\r\n5,6\r\n"), [2, 3, 4]);
        assert_eq!(lines("a,b\r\n1,2\r\n\r\n3,4\r\n"), [2, 4]);
        assert_eq!(lines("a,b\n\"x\ny\",2\n3,4\n"), [2, 4]);
        assert_eq!(lines("a,b\r\n\"x\r\ny\",2\r\n\r\n\r\n3,4"), [2, 6]);
    }
}
