//! Tabular mode: a CSV whose columns already are the features (account-level
//! exports, PCA-anonymised card datasets). Nothing is configured: each column is
//! profiled in one streaming pass, its type inferred, id-like and constant
//! columns set aside, and categoricals given integer codes a tree can split on.
//! The fitted [`TabularEncoding`] is a value: saved with a model and applied
//! unchanged at serving time.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::Label;

/// Distinct values tracked per column; beyond this a column is "high cardinality".
pub const DISTINCT_CAP: usize = 10_000;
/// Most categories with their own code; the rest share the "other" code.
pub const MAX_CATEGORIES: usize = 254;
/// Columns need at least this many rows before "every value distinct" means "id".
const MIN_ROWS_FOR_ID: u64 = 20;

/// Result of reading a cell as a number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParsedNumber {
    /// Blank or a missing-value token (`NA`, `NaN`, `null`, `?`…).
    Missing,
    /// A number, possibly ±infinity.
    Value(f64),
    /// Not a number.
    Text,
}

/// `true` for the spellings of "no value" found in exports: blank, `na`, `n/a`,
/// `nan`, `null`, `none`, `?` (any case).
pub fn is_missing_token(text: &str) -> bool {
    let text = text.trim();
    text.is_empty()
        || text == "?"
        || ["na", "n/a", "nan", "null", "none"]
            .iter()
            .any(|token| text.eq_ignore_ascii_case(token))
}

/// Reads a cell as a number; `inf`, `-inf` and `infinity` are values.
pub fn parse_number(text: &str) -> ParsedNumber {
    if is_missing_token(text) {
        return ParsedNumber::Missing;
    }
    match text.trim().parse::<f64>() {
        Ok(value) => ParsedNumber::Value(value),
        Err(_) => ParsedNumber::Text,
    }
}

/// Makes header names unique and non-empty: blanks become `column_<n>`, repeats
/// get `.1`, `.2`… (as pandas does). Returns the names and a note per change.
pub fn dedupe_header<S: AsRef<str>>(raw: &[S]) -> (Vec<String>, Vec<String>) {
    let mut names: Vec<String> = Vec::with_capacity(raw.len());
    // a set beside the list: a header of many columns costs linear time, not quadratic
    let mut taken: rustc_hash::FxHashSet<String> = rustc_hash::FxHashSet::default();
    let mut notes = Vec::new();
    for (idx, name) in raw.iter().enumerate() {
        let trimmed = name.as_ref().trim();
        let mut candidate = if trimmed.is_empty() {
            notes.push(format!("column {} has no name: called column_{}", idx + 1, idx + 1));
            format!("column_{}", idx + 1)
        } else {
            trimmed.to_owned()
        };
        if taken.contains(&candidate) {
            let base = candidate.clone();
            let mut n = 1;
            while taken.contains(&candidate) {
                candidate = format!("{base}.{n}");
                n += 1;
            }
            notes.push(format!(
                "column {} repeats the name {base:?}: called {candidate:?}",
                idx + 1
            ));
        }
        taken.insert(candidate.clone());
        names.push(candidate);
    }
    (names, notes)
}

/// Statistics of one column, accumulated row by row with bounded memory.
#[derive(Clone, Debug)]
pub struct ColumnProfile {
    name: String,
    n_rows: u64,
    n_missing: u64,
    n_numeric: u64,
    n_text: u64,
    n_infinite: u64,
    first_text: Option<String>,
    /// Cells that look like card numbers (digits passing the Luhn check).
    n_card_like: u64,
    integer_valued: bool,
    strictly_increasing: bool,
    last_value: f64,
    min: f64,
    max: f64,
    counts: FxHashMap<String, u64>,
    /// More than [`DISTINCT_CAP`] distinct values were seen.
    overflowed: bool,
    /// Every non-missing value was distinct up to the point of overflow (or the end).
    unique_so_far: bool,
}

impl ColumnProfile {
    /// An empty profile for the column `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            n_rows: 0,
            n_missing: 0,
            n_numeric: 0,
            n_text: 0,
            n_infinite: 0,
            first_text: None,
            n_card_like: 0,
            integer_valued: true,
            strictly_increasing: true,
            last_value: f64::NEG_INFINITY,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            counts: FxHashMap::default(),
            overflowed: false,
            unique_so_far: true,
        }
    }

    /// Adds one cell.
    pub fn observe(&mut self, text: &str) {
        self.n_rows += 1;
        let text = text.trim();
        if text.len() >= 13 && crate::looks_like_card_number(text) {
            self.n_card_like += 1;
        }
        match parse_number(text) {
            ParsedNumber::Missing => {
                self.n_missing += 1;
                self.strictly_increasing = false;
                return;
            }
            ParsedNumber::Value(value) => {
                self.n_numeric += 1;
                if value.is_infinite() {
                    self.n_infinite += 1;
                } else {
                    self.min = self.min.min(value);
                    self.max = self.max.max(value);
                }
                self.integer_valued &= value.fract() == 0.0;
                self.strictly_increasing &= value > self.last_value;
                self.last_value = value;
            }
            ParsedNumber::Text => {
                self.n_text += 1;
                if self.first_text.is_none() {
                    self.first_text = Some(text.chars().take(40).collect());
                }
            }
        }
        if let Some(count) = self.counts.get_mut(text) {
            *count += 1;
            self.unique_so_far = false;
        } else if self.counts.len() < DISTINCT_CAP {
            self.counts.insert(text.to_owned(), 1);
        } else {
            self.overflowed = true;
        }
    }

    /// Column name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Decides what the column is.
    pub fn infer(&self) -> InferredColumn {
        let n_present = self.n_rows - self.n_missing;
        let n_distinct = self.counts.len();
        let kind = if n_present == 0 {
            ColumnKind::Excluded(Exclusion::Empty)
        } else if self.n_card_like * 2 > n_present {
            ColumnKind::Excluded(Exclusion::CardNumber)
        } else if n_distinct <= 1 && !self.overflowed && self.n_missing == 0 {
            ColumnKind::Excluded(Exclusion::Constant)
        } else if self.n_text > 0 {
            let all_distinct = self.unique_so_far && n_present == self.n_rows && self.n_rows >= MIN_ROWS_FOR_ID;
            if all_distinct {
                ColumnKind::Excluded(Exclusion::IdLike)
            } else {
                ColumnKind::Categorical(CategoryEncoder::fit(&self.counts, MAX_CATEGORIES))
            }
        } else {
            let counter = self.integer_valued && self.strictly_increasing && self.n_rows >= MIN_ROWS_FOR_ID;
            let named_id = looks_like_id_name(&self.name)
                && self.integer_valued
                && self.unique_so_far
                && n_present == self.n_rows
                && self.n_rows >= MIN_ROWS_FOR_ID;
            if counter || named_id {
                ColumnKind::Excluded(Exclusion::IdLike)
            } else {
                ColumnKind::Numeric
            }
        };
        InferredColumn {
            name: self.name.clone(),
            kind,
            n_rows: self.n_rows,
            n_missing: self.n_missing,
            n_infinite: self.n_infinite,
            n_distinct: n_distinct as u64,
            distinct_capped: self.overflowed,
            numeric_range: (self.n_numeric > self.n_infinite).then_some((self.min, self.max)),
            n_text: self.n_text,
            n_numeric: self.n_numeric,
            // never show a sample of a card-number column
            first_text: if self.n_card_like > 0 {
                None
            } else {
                self.first_text.clone()
            },
        }
    }

    /// Value counts seen so far (at most [`DISTINCT_CAP`] entries).
    pub fn counts(&self) -> &FxHashMap<String, u64> {
        &self.counts
    }
}

/// `id`, `account_id`, `account id`, `accountId`, `userID`.
pub fn looks_like_id_name(name: &str) -> bool {
    let name = name.trim();
    let lower = name.to_ascii_lowercase();
    lower == "id"
        || [" id", "_id", "-id", ".id"]
            .iter()
            .any(|suffix| lower.ends_with(suffix))
        || (name.len() > 2 && (name.ends_with("Id") || name.ends_with("ID")))
}

/// Why a column is not used as a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Every value is distinct (an id or row counter): it cannot generalise.
    IdLike,
    /// A single value in every row.
    Constant,
    /// No values at all.
    Empty,
    /// Most values look like card numbers: never used, stored or shown.
    CardNumber,
    /// Excluded by the user.
    Requested,
}

impl Exclusion {
    /// A short reason for reports.
    pub fn reason(self) -> &'static str {
        match self {
            Self::IdLike => "id-like: every value distinct",
            Self::Constant => "constant: one value in every row",
            Self::Empty => "empty: no values",
            Self::CardNumber => "card numbers: never used or stored in clear (hash them in event mode)",
            Self::Requested => "excluded on request",
        }
    }
}

/// What a column turned out to be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ColumnKind {
    /// A number (missing values allowed).
    Numeric,
    /// Text categories, with their codes.
    Categorical(CategoryEncoder),
    /// The label column.
    Label,
    /// Not a feature.
    Excluded(Exclusion),
}

/// The inference result of one column, with the statistics behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct InferredColumn {
    /// Column name (after de-duplication).
    pub name: String,
    /// What it is.
    pub kind: ColumnKind,
    /// Rows seen.
    pub n_rows: u64,
    /// Blank or missing-token cells.
    pub n_missing: u64,
    /// `inf` / `-inf` cells.
    pub n_infinite: u64,
    /// Distinct values (capped at [`DISTINCT_CAP`]).
    pub n_distinct: u64,
    /// `n_distinct` hit the cap.
    pub distinct_capped: bool,
    /// Finite minimum and maximum, when there are numbers.
    pub numeric_range: Option<(f64, f64)>,
    /// Cells that are not numbers.
    pub n_text: u64,
    /// Cells that are numbers.
    pub n_numeric: u64,
    /// The first non-numeric cell, to explain why a column is categorical.
    pub first_text: Option<String>,
}

/// Integer codes for the categories of one column, most frequent first.
/// Code `categories.len()` is "other": rare or unseen categories. Missing stays
/// missing (NaN) so the model's missing-value handling applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CategoryList", into = "CategoryList")]
pub struct CategoryEncoder {
    categories: Vec<String>,
    lookup: FxHashMap<String, u32>,
}

/// The stored form of a [`CategoryEncoder`]: its lookup table is rebuilt on load.
#[derive(Serialize, Deserialize)]
struct CategoryList {
    categories: Vec<String>,
}

impl From<CategoryList> for CategoryEncoder {
    fn from(list: CategoryList) -> Self {
        Self::from_categories(list.categories)
    }
}

impl From<CategoryEncoder> for CategoryList {
    fn from(encoder: CategoryEncoder) -> Self {
        Self {
            categories: encoder.categories,
        }
    }
}

impl CategoryEncoder {
    /// Codes the `max_categories` most frequent values (ties by name, so the
    /// result does not depend on hash order).
    pub fn fit(counts: &FxHashMap<String, u64>, max_categories: usize) -> Self {
        let mut ranked: Vec<(&String, u64)> = counts
            .iter()
            .filter(|(value, _)| !is_missing_token(value))
            .map(|(value, count)| (value, *count))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked.truncate(max_categories);
        Self::from_categories(ranked.into_iter().map(|(value, _)| value.clone()).collect())
    }

    /// An encoder with the given categories in code order.
    pub fn from_categories(categories: Vec<String>) -> Self {
        let lookup = categories
            .iter()
            .enumerate()
            .map(|(idx, value)| (value.clone(), idx as u32))
            .collect();
        Self { categories, lookup }
    }

    /// Categories in code order.
    pub fn categories(&self) -> &[String] {
        &self.categories
    }

    /// The code of `value`: its rank, "other" when unknown, NaN when missing.
    pub fn encode(&self, value: Option<&str>) -> f64 {
        match value.map(str::trim) {
            None => f64::NAN,
            Some(text) if is_missing_token(text) => f64::NAN,
            Some(text) => f64::from(self.lookup.get(text).copied().unwrap_or(self.categories.len() as u32)),
        }
    }
}

/// Candidate names of a label column, tried in order when none is given.
pub const LABEL_CANDIDATES: [&str; 10] = [
    "is_fraud",
    "isFraud",
    "fraud",
    "Class",
    "class",
    "label",
    "target",
    "is_fraudulent",
    "fraud_bool",
    // the public labelled Ethereum address dataset's (and `fraudlens eth features`')
    "FLAG",
];

/// Picks the label column: `requested` if given, else the first known candidate name.
pub fn find_label_column(header: &[String], requested: Option<&str>) -> Option<usize> {
    match requested {
        Some(name) => header.iter().position(|h| h == name).or_else(|| {
            let mut hits = header.iter().enumerate().filter(|(_, h)| h.eq_ignore_ascii_case(name));
            match (hits.next(), hits.next()) {
                (Some((idx, _)), None) => Some(idx),
                _ => None,
            }
        }),
        None => LABEL_CANDIDATES
            .iter()
            .find_map(|candidate| header.iter().position(|h| h == candidate)),
    }
}

/// The fitted tabular encoding: which columns are features and how each cell
/// becomes a number. Saved with a model and applied unchanged at serving time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TabularEncoding {
    /// Format version of this structure.
    pub format_version: u32,
    /// Label column name, if the training data had one.
    pub label: Option<String>,
    /// Feature columns in model input order.
    pub features: Vec<TabularFeature>,
    /// Columns set aside, with the reason.
    pub excluded: Vec<(String, Exclusion)>,
}

/// One model input of a tabular encoding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TabularFeature {
    /// Column name (as de-duplicated at fit time).
    pub name: String,
    /// Numeric or categorical with codes.
    pub kind: ColumnKind,
}

/// Why a tabular row cannot be encoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TabularRowError {
    /// A numeric feature holds text.
    #[error("column {column:?}: unparsable number {value:?}")]
    NotANumber {
        /// Column name.
        column: String,
        /// The cell, shortened.
        value: String,
    },
    /// The label is not a recognised spelling.
    #[error("column {column:?}: {source}")]
    Label {
        /// Column name.
        column: String,
        /// Why.
        source: crate::LabelError,
    },
}

impl TabularEncoding {
    /// Current format version.
    pub const FORMAT_VERSION: u32 = 1;

    /// Builds the encoding from profiled columns; `label` is the label's index
    /// among them, `excluded` names the user wants left out.
    pub fn fit(profiles: &[ColumnProfile], label: Option<usize>, excluded: &[String]) -> (Self, Vec<InferredColumn>) {
        let mut inferred = Vec::with_capacity(profiles.len());
        let mut features = Vec::new();
        let mut excluded_columns = Vec::new();
        for (idx, profile) in profiles.iter().enumerate() {
            let mut column = profile.infer();
            if Some(idx) == label {
                column.kind = ColumnKind::Label;
            } else if excluded.iter().any(|name| name == profile.name()) {
                column.kind = ColumnKind::Excluded(Exclusion::Requested);
            }
            match &column.kind {
                ColumnKind::Numeric | ColumnKind::Categorical(_) => {
                    features.push(TabularFeature {
                        name: column.name.clone(),
                        kind: column.kind.clone(),
                    });
                }
                ColumnKind::Excluded(reason) => excluded_columns.push((column.name.clone(), *reason)),
                ColumnKind::Label => {}
            }
            inferred.push(column);
        }
        let encoding = Self {
            format_version: Self::FORMAT_VERSION,
            label: label.map(|idx| profiles[idx].name().to_owned()),
            features,
            excluded: excluded_columns,
        };
        (encoding, inferred)
    }

    /// Names of the model inputs in order.
    pub fn feature_names(&self) -> impl Iterator<Item = &str> {
        self.features.iter().map(|feature| feature.name.as_str())
    }

    /// Column index (in `header`) of each feature, `None` when absent.
    pub fn bind(&self, header: &[String]) -> Vec<Option<usize>> {
        self.features
            .iter()
            .map(|feature| header.iter().position(|h| *h == feature.name))
            .collect()
    }

    /// Encodes one row: `cell(i)` is the text of the `i`-th feature's column
    /// (from [`Self::bind`]); a missing column reads as missing.
    pub fn encode_row<'r>(
        &self,
        cell: impl Fn(usize) -> Option<&'r str>,
        out: &mut Vec<f64>,
    ) -> Result<(), TabularRowError> {
        out.clear();
        for (idx, feature) in self.features.iter().enumerate() {
            let text = cell(idx);
            out.push(match &feature.kind {
                ColumnKind::Categorical(encoder) => encoder.encode(text),
                _ => match parse_number(text.unwrap_or("")) {
                    ParsedNumber::Missing => f64::NAN,
                    ParsedNumber::Value(value) => value,
                    ParsedNumber::Text => {
                        return Err(TabularRowError::NotANumber {
                            column: feature.name.clone(),
                            value: text.unwrap_or("").chars().take(40).collect(),
                        });
                    }
                },
            });
        }
        Ok(())
    }

    /// Reads a label cell; blank means unlabeled.
    pub fn parse_label(&self, text: Option<&str>) -> Result<Option<Label>, TabularRowError> {
        match text.map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => Label::parse(text).map(Some).map_err(|source| TabularRowError::Label {
                column: self.label.clone().unwrap_or_default(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, cells: &[&str]) -> ColumnProfile {
        let mut profile = ColumnProfile::new(name);
        for cell in cells {
            profile.observe(cell);
        }
        profile
    }

    fn check(name: &str, cells: &[&str], expected: &str) {
        let kind = match profile(name, cells).infer().kind {
            ColumnKind::Numeric => "numeric".to_owned(),
            ColumnKind::Categorical(encoder) => format!("categorical{:?}", encoder.categories()),
            ColumnKind::Label => "label".to_owned(),
            ColumnKind::Excluded(reason) => format!("excluded:{reason:?}"),
        };
        assert_eq!(kind, expected, "{name}: {cells:?}");
    }

    #[test]
    fn numbers_and_missing_tokens() {
        assert_eq!(parse_number(" 1.5 "), ParsedNumber::Value(1.5));
        assert_eq!(parse_number("-inf"), ParsedNumber::Value(f64::NEG_INFINITY));
        assert_eq!(parse_number("Infinity"), ParsedNumber::Value(f64::INFINITY));
        for missing in ["", " ", "NA", "nan", "NaN", "null", "None", "?", "n/a"] {
            assert_eq!(parse_number(missing), ParsedNumber::Missing, "{missing:?}");
        }
        assert_eq!(parse_number("1,5"), ParsedNumber::Text);
    }

    #[test]
    fn inference() {
        let counter: Vec<String> = (0..30).map(|i| i.to_string()).collect();
        let counter: Vec<&str> = counter.iter().map(String::as_str).collect();
        let shuffled_ids: Vec<String> = (0..30).map(|i| ((i * 7) % 30).to_string()).collect();
        let shuffled_ids: Vec<&str> = shuffled_ids.iter().map(String::as_str).collect();
        let names: Vec<String> = (0..30).map(|i| format!("user{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        check("amount", &["1.5", "", "NaN", "inf", "3"], "numeric");
        check("x", &["1", "1", "1"], "excluded:Constant");
        check("x", &["1", "", "1"], "numeric");
        check("x", &["", "NA", ""], "excluded:Empty");
        check("Unnamed: 0", &counter, "excluded:IdLike");
        check("account id", &shuffled_ids, "excluded:IdLike");
        check("score", &shuffled_ids, "numeric");
        check("user", &names, "excluded:IdLike");
        check(
            "user",
            &names[..5],
            "categorical[\"user0\", \"user1\", \"user2\", \"user3\", \"user4\"]",
        );
        check(
            "country",
            &["DE", "FR", "DE", "", "12"],
            "categorical[\"DE\", \"12\", \"FR\"]",
        );
    }

    #[test]
    fn header_dedupe() {
        let (names, notes) = dedupe_header(&["a", " a ", "", "a.1", "b c"]);
        assert_eq!(names, ["a", "a.1", "column_3", "a.1.1", "b c"]);
        assert_eq!(notes.len(), 3);
    }

    #[test]
    fn encoder_codes_and_round_trip() {
        let counts: FxHashMap<String, u64> = [("b".to_owned(), 5), ("a".to_owned(), 5), ("c".to_owned(), 1)]
            .into_iter()
            .collect();
        let encoder = CategoryEncoder::fit(&counts, 2);
        assert_eq!(encoder.categories(), ["a", "b"]);
        assert_eq!(encoder.encode(Some("b")), 1.0);
        assert_eq!(encoder.encode(Some("c")), 2.0, "rare values share the other code");
        assert_eq!(encoder.encode(Some("zzz")), 2.0, "unseen values share the other code");
        assert!(encoder.encode(Some("")).is_nan());
        let profiles = [
            profile("cat", &["x", "y", "x"]),
            profile("num", &["1", "2", ""]),
            profile("y", &["0", "1", "0"]),
        ];
        let (encoding, _) = TabularEncoding::fit(&profiles, Some(2), &[]);
        let restored: TabularEncoding = serde_json::from_str(&serde_json::to_string(&encoding).unwrap()).unwrap();
        let mut row = Vec::new();
        restored.encode_row(|idx| [Some("y"), Some("")][idx], &mut row).unwrap();
        assert_eq!(row[0], 1.0);
        assert!(row[1].is_nan());
        assert!(
            restored
                .encode_row(|idx| [Some("y"), Some("abc")][idx], &mut row)
                .is_err()
        );
    }
}
