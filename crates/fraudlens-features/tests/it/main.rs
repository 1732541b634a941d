//! Integration tests of the feature engine through its public API.

mod history;
mod oracle;
mod parity;
mod snapshot;
mod spec;
