//! The fraudlens transaction simulator.
//!
//! Customers live at a home location with a spending profile (mean and spread
//! of amounts, transactions per day, preferred hour); terminals sit on the same
//! map with a merchant category, and some are online merchants. Each day every
//! customer makes a Poisson number of purchases, mostly at nearby terminals,
//! during their usual hours. On top of that run four fraud scenarios a real
//! system must catch:
//!
//! - **stolen card**: for 1–3 days a fraudster makes large purchases at
//!   high-risk merchants anywhere, often at night;
//! - **compromised terminal**: for 7–28 days a share (50–100 %) of a
//!   terminal's transactions are fraudulent, with ordinary amounts;
//! - **account takeover**: for 7–14 days a third of a customer's purchases move
//!   online with five times the usual amount;
//! - **card testing**: a burst of 5–20 tiny online payments within minutes at
//!   unfamiliar merchants, sometimes followed by one large purchase.
//!
//! The output is deterministic for a seed — the same bytes on every platform —
//! because randomness comes from [`rng::Rng`], which uses only IEEE basic
//! arithmetic. Generation is day by day, so memory does not grow with the
//! number of days.
//!
//! Layout: `config` (parameters and their checks), `world` (terminals and
//! customers on the map), `scenarios` (the four scenarios and everyday
//! purchases), `simulator` (the day loop), `records` (the generated
//! transaction) and `formats` (CSV, JSON lines, Stripe-shaped JSON).

pub use fraudlens_core::rng;

mod config;
mod formats;
mod records;
mod scenarios;
mod simulator;
mod world;

pub use config::{SimConfig, SimError};
pub use formats::{RecordFormat, csv_header, write_records};
pub use records::{NATIVE_COLUMNS, SimRecord};
pub use scenarios::Scenario;
pub use simulator::Simulator;
