//! A file through `EventReader`, as CSV and as JSON lines: every record is a
//! transaction or a bad row with its line, and nothing panics.
#![no_main]

use std::io::Cursor;
use std::path::Path;
use std::sync::LazyLock;

use fraudlens_core::{Schema, SchemaConfig};
use fraudlens_ingest::{EventReader, InputFormat};
use libfuzzer_sys::fuzz_target;

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| Schema::new(SchemaConfig::default(), None).expect("default schema"));

fuzz_target!(|data: &[u8]| {
    for format in [InputFormat::Csv, InputFormat::JsonLines] {
        let input = Box::new(Cursor::new(data.to_vec()));
        let Ok(mut reader) = EventReader::from_reader(input, Path::new("fuzz"), format, &SCHEMA, false, 5) else {
            continue;
        };
        let mut last_line = 0;
        while let Ok(Some(_)) = reader.next_transaction() {
            // line numbers only move forward
            assert!(reader.line() >= last_line, "{} < {last_line}", reader.line());
            last_line = reader.line();
            let _ = reader.passthrough();
        }
        let bad = reader.bad_rows();
        assert!(bad.examples().len() as u64 <= bad.count());
        for issue in bad.examples() {
            assert!(issue.line >= 1);
        }
    }
});
