//! The output formats of a [`SimRecord`]: native CSV (with [`csv_header`]),
//! native JSON lines, and Stripe-charge-shaped JSON lines; [`write_records`]
//! writes a whole simulation.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use fraudlens_core::{Currency, Timestamp};

use crate::{NATIVE_COLUMNS, Scenario, SimRecord, Simulator};

impl SimRecord {
    /// Appends the record as one CSV line of the native format.
    pub fn write_csv(&self, currency: Currency, out: &mut String) {
        for (idx, (_, value)) in self.native_fields(currency).iter().enumerate() {
            let separator = if idx == 0 { "" } else { "," };
            let _ = write!(out, "{separator}{value}");
        }
        out.push('\n');
    }

    /// Appends the record as one JSON line shaped like a Stripe charge
    /// (`id`, `amount` in minor units, lowercase `currency`, `created` in unix
    /// seconds, `customer`, `payment_method_details.card.{fingerprint,country,brand}`,
    /// `billing_details.address.country`, `metadata`). Each customer has one
    /// card; the terminal, merchant category, channel and the simulation's label
    /// travel in `metadata`. `schemas/stripe-charge.toml` maps it.
    pub fn write_stripe_json(&self, currency: Currency, out: &mut String) {
        const BRANDS: [&str; 3] = ["visa", "mastercard", "amex"];
        let _ = write!(
            out,
            "{{\"id\":\"ch_{:010}\",\"object\":\"charge\",\"amount\":{},\"currency\":\"{}\",\"created\":{},\
             \"customer\":\"cust_{:06}\",\"payment_method_details\":{{\"type\":\"card\",\"card\":{{\
             \"fingerprint\":\"fp_{:06}\",\"country\":\"{}\",\"brand\":\"{}\"}}}},\
             \"billing_details\":{{\"address\":{{\"country\":\"{}\"}}}},\"metadata\":{{\"terminal_id\":\"term_{:06}\",\
             \"mcc\":\"{}\",\"channel\":\"{}\",\"is_fraud\":\"{}\"}}}}",
            self.number,
            self.amount_minor,
            currency.as_str().to_ascii_lowercase(),
            self.timestamp.as_millis().div_euclid(1000),
            self.customer,
            self.customer,
            self.country,
            BRANDS[self.customer as usize % BRANDS.len()],
            self.country,
            self.terminal,
            self.mcc,
            self.channel,
            u8::from(self.is_fraud()),
        );
        out.push('\n');
    }

    /// Appends the record as one JSON line with the native field names.
    pub fn write_json(&self, currency: Currency, out: &mut String) {
        for (idx, (name, value)) in self.native_fields(currency).iter().enumerate() {
            let separator = if idx == 0 { "{" } else { "," };
            // every text value is an id or a code: nothing to escape
            let quote = if matches!(*name, "amount" | "is_fraud") {
                ""
            } else {
                "\""
            };
            let _ = write!(out, "{separator}\"{name}\":{quote}{value}{quote}");
        }
        out.push_str("}\n");
    }

    /// The values of [`NATIVE_COLUMNS`], in order: one list for both formats.
    fn native_fields(&self, currency: Currency) -> [(&'static str, Field); 11] {
        let values = [
            Field::Id("tx_", 10, self.number),
            Field::Time(self.timestamp),
            Field::Id("cust_", 6, u64::from(self.customer)),
            Field::Id("term_", 6, u64::from(self.terminal)),
            Field::Amount(self.amount_minor, currency.exponent()),
            Field::Currency(currency),
            Field::Text(self.mcc),
            Field::Text(self.channel),
            Field::Text(self.country),
            Field::Text(if self.is_fraud() { "1" } else { "0" }),
            Field::Text(self.scenario.as_str()),
        ];
        let mut idx = 0;
        values.map(|value| {
            idx += 1;
            (NATIVE_COLUMNS[idx - 1], value)
        })
    }
}

/// One value of a native record, formatted on write.
enum Field {
    /// A prefix and a zero-padded number (`tx_0000000001`).
    Id(&'static str, usize, u64),
    Time(Timestamp),
    /// Minor units and the currency exponent.
    Amount(i64, u32),
    Currency(Currency),
    Text(&'static str),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(prefix, width, number) => write!(f, "{prefix}{number:0width$}"),
            Self::Time(timestamp) => write!(f, "{timestamp}"),
            Self::Amount(minor, 0) => write!(f, "{minor}"),
            Self::Amount(minor, exponent) => {
                let scale = 10i64.pow(*exponent);
                write!(
                    f,
                    "{}.{:0width$}",
                    minor / scale,
                    minor % scale,
                    width = *exponent as usize
                )
            }
            Self::Currency(currency) => write!(f, "{currency}"),
            Self::Text(text) => f.write_str(text),
        }
    }
}

/// The header line of the native CSV format.
pub fn csv_header() -> String {
    let mut header = NATIVE_COLUMNS.join(",");
    header.push('\n');
    header
}

/// How records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFormat {
    /// Native CSV, after [`csv_header`].
    Csv,
    /// Native JSON lines.
    Jsonl,
    /// Stripe-charge-shaped JSON lines.
    Stripe,
}

impl SimRecord {
    /// Appends the record as one line in `format`.
    pub fn write(&self, format: RecordFormat, currency: Currency, out: &mut String) {
        match format {
            RecordFormat::Csv => self.write_csv(currency, out),
            RecordFormat::Jsonl => self.write_json(currency, out),
            RecordFormat::Stripe => self.write_stripe_json(currency, out),
        }
    }
}

/// Writes every day of `simulator` to `out` in `format` (a header first for
/// CSV), in blocks of about a MiB; returns the rows written per scenario.
pub fn write_records(
    simulator: Simulator,
    currency: Currency,
    format: RecordFormat,
    out: &mut impl std::io::Write,
) -> std::io::Result<BTreeMap<Scenario, u64>> {
    let mut buffer = String::with_capacity(1 << 20);
    if format == RecordFormat::Csv {
        buffer.push_str(&csv_header());
    }
    let mut by_scenario = BTreeMap::new();
    for day in simulator {
        for record in &day {
            record.write(format, currency, &mut buffer);
            *by_scenario.entry(record.scenario).or_insert(0) += 1;
            if buffer.len() > (1 << 20) - 512 {
                out.write_all(buffer.as_bytes())?;
                buffer.clear();
            }
        }
    }
    out.write_all(buffer.as_bytes())?;
    Ok(by_scenario)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::tests::{run, small};

    #[test]
    fn to_transaction_equals_parsing_the_csv_line() {
        let schema = fraudlens_core::Schema::new(fraudlens_core::SchemaConfig::default(), None).unwrap();
        let binding = schema.bind_columns(&NATIVE_COLUMNS).unwrap();
        let eur = Currency::parse("EUR").unwrap();
        for record in run(small()).iter().filter(|r| r.number % 97 == 0 || r.is_fraud()) {
            let mut line = String::new();
            record.write_csv(eur, &mut line);
            let cells: Vec<&str> = line.trim_end().split(',').collect();
            let parsed = schema.parse_row(&binding, |idx| cells.get(idx).copied()).unwrap();
            assert_eq!(parsed, record.to_transaction(eur));
        }
    }

    #[test]
    fn csv_and_json_lines() {
        let record = &run(small())[0];
        let (mut csv, mut json) = (String::new(), String::new());
        let eur = Currency::parse("EUR").unwrap();
        record.write_csv(eur, &mut csv);
        record.write_json(eur, &mut json);
        assert_eq!(csv.trim_end().split(',').count(), NATIVE_COLUMNS.len());
        assert!(csv.starts_with("tx_0000000001,2026-01-01T"), "{csv}");
        assert!(
            json.starts_with(r#"{"transaction_id":"tx_0000000001","timestamp":"2026-01-01T"#),
            "{json}"
        );
        assert_eq!(Field::Amount(1205, 2).to_string(), "12.05");
        assert_eq!(Field::Amount(1205, 0).to_string(), "1205");
        assert_eq!(Field::Amount(5, 3).to_string(), "0.005");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["amount"].as_f64().unwrap() * 100.0, record.amount_minor as f64);
        assert_eq!(parsed.as_object().unwrap().len(), NATIVE_COLUMNS.len());
    }

    /// A whole simulation written as CSV is the header and every record's
    /// line, counted per scenario.
    #[test]
    fn write_records_writes_the_header_and_every_record() {
        let records = run(small());
        let eur = Currency::parse("EUR").unwrap();
        let mut expected = csv_header();
        for record in &records {
            record.write(RecordFormat::Csv, eur, &mut expected);
        }
        let mut out = Vec::new();
        let simulator = Simulator::new(small()).unwrap();
        let by_scenario = write_records(simulator, eur, RecordFormat::Csv, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        assert_eq!(by_scenario.values().sum::<u64>(), records.len() as u64);
    }
}
