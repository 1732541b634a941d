//! Card numbers are hashed at parse time and never written or logged in clear.

use crate::{fixture, fraudlens, read_csv};

#[test]
fn card_numbers_never_leave_the_parser() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("cards.csv");
    let schema = fixture("cards_schema.toml");
    let args = [
        "--log-level",
        "trace",
        "features",
        "--data",
        data.to_str().unwrap(),
        "--schema",
        schema.to_str().unwrap(),
        "--out",
        "f.csv",
        "--snapshot-out",
        "s.bin",
    ];
    let key = [("FRAUDLENS_SECURITY__CARD_HASH_KEY", "a-test-key-of-enough-length")];
    let run = fraudlens(dir.path(), &args, &key);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("line 5: field \"pan\" (card) is not a card number (12-19 digits)"),
        "{}",
        run.stderr
    );
    let (header, rows) = read_csv(&dir.path().join("f.csv"));
    assert_eq!(rows.len(), 3);
    let count = header.iter().position(|h| h == "card_count_1d").unwrap();
    assert_eq!(rows[1][count], "2", "both spellings of the same card are one entity");
    let output = std::fs::read_to_string(dir.path().join("f.csv")).unwrap();
    let snapshot = std::fs::read(dir.path().join("s.bin")).unwrap();
    for clear in ["4111", "5500 0000", "11x1"] {
        assert!(!output.contains(clear), "{clear} in output");
        assert!(!run.stderr.contains(clear), "{clear} in logs");
        assert!(
            !snapshot.windows(4).any(|w| w == &clear.as_bytes()[..4]),
            "{clear} in snapshot"
        );
    }

    let run = fraudlens(dir.path(), &args, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("needs security.card_hash_key"), "{}", run.stderr);

    let config = fraudlens(dir.path(), &["config"], &key);
    assert!(
        !config.stdout.contains("a-test-key"),
        "the key is redacted in `fraudlens config`"
    );
    assert!(
        config.stdout.contains("card_hash_key = \"[redacted]\""),
        "{}",
        config.stdout
    );
}
