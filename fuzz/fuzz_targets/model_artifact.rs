//! Model artifact directories through `Artifact::load`. The input is
//! `model.json`, then optionally `\0` and `trees.json`, then optionally `\0`
//! and `anomaly.json`; the target writes them with a matching `SHA256SUMS`, so
//! mutations reach the parsers and checks behind the checksums. A loaded
//! artifact must score any row of the right length.
#![no_main]

use std::cell::RefCell;
use std::path::PathBuf;

use fraudlens_model::artifact::{Artifact, sha256_hex};
use libfuzzer_sys::fuzz_target;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    // one directory per process, rewritten per input: the loader takes a path
    static DIR: RefCell<Option<Dir>> = const { RefCell::new(None) };
}

fn dir() -> PathBuf {
    DIR.with(|dir| {
        dir.borrow_mut()
            .get_or_insert_with(|| {
                let path = std::env::temp_dir().join(format!("fraudlens-fuzz-artifact-{}", std::process::id()));
                std::fs::create_dir_all(&path).expect("temp dir");
                Dir(path)
            })
            .0
            .clone()
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let mut sums = String::new();
    for name in ["model.json", "trees.json", "anomaly.json"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    for (name, bytes) in ["model.json", "trees.json", "anomaly.json"]
        .into_iter()
        .zip(data.split(|b| *b == 0))
    {
        std::fs::write(dir.join(name), bytes).expect("write a part");
        sums.push_str(&format!("{}  {name}\n", sha256_hex(bytes)));
    }
    std::fs::write(dir.join("SHA256SUMS"), sums).expect("write the checksums");
    let Ok(artifact) = Artifact::load(&dir) else { return };
    let n = artifact.n_inputs();
    for fill in [0.0, f64::NAN, -1e300, f64::INFINITY] {
        let row = vec![fill; n];
        let score = artifact.score(&row).expect("a row of the right length scores");
        let _ = artifact.decide(score.ranking());
        let _ = artifact.reasons(&row, 3);
        let batch = artifact
            .score_batch(&[row.clone(), row].concat())
            .expect("a batch scores");
        assert_eq!(batch.len(), 2);
    }
});
