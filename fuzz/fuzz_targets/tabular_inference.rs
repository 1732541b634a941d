//! A tabular CSV through the profiling pass, type inference, the fitted
//! encoding (and its stored JSON form) and the encoding reader, as
//! `features`/`train` run them in tabular mode.
#![no_main]

use std::cell::RefCell;
use std::path::PathBuf;

use fraudlens_core::tabular::{TabularEncoding, find_label_column};
use fraudlens_ingest::{TabularReader, profile_csv};
use libfuzzer_sys::fuzz_target;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    // one file per process, rewritten per input: the readers take a path
    static DIR: RefCell<Option<Dir>> = const { RefCell::new(None) };
}

fn path() -> PathBuf {
    DIR.with(|dir| {
        dir.borrow_mut()
            .get_or_insert_with(|| {
                let path = std::env::temp_dir().join(format!("fraudlens-fuzz-tabular-{}", std::process::id()));
                std::fs::create_dir_all(&path).expect("temp dir");
                Dir(path)
            })
            .0
            .join("input.csv")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = path();
    std::fs::write(&path, data).expect("write the input");
    let Ok(profile) = profile_csv(&path, false, 5) else {
        return;
    };
    assert_eq!(profile.header.len(), profile.columns.len());
    let label = find_label_column(&profile.header, None);
    let (encoding, inferred) = TabularEncoding::fit(&profile.columns, label, &[]);
    assert_eq!(inferred.len(), profile.columns.len());
    // the encoding is stored in model artifacts: it must read back as itself
    let stored = serde_json::to_string(&encoding).expect("an encoding serialises");
    let back: TabularEncoding = serde_json::from_str(&stored).expect("a stored encoding reads back");
    assert_eq!(serde_json::to_string(&back).expect("serialises"), stored);
    let n_features = encoding.feature_names().count();
    let Ok(mut reader) = TabularReader::open(&path, &encoding, false, 5) else {
        return;
    };
    let mut row = Vec::new();
    while let Ok(Some(_)) = reader.next_row(&mut row) {
        assert_eq!(row.len(), n_features);
    }
});
