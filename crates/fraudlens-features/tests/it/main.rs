//! Integration tests of the feature engine through its public API.

// a failed unwrap in a test helper is a failed test with a backtrace
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod event_time;
mod history;
mod oracle;
mod parity;
mod shared;
mod snapshot;
mod spec;
