//! LightGBM/XGBoost interop: parity with the libraries' own outputs
//! (committed fixtures, and live through `scripts/parity`), errors on bad
//! models, and export → import round trips.

mod errors;
mod parity;
mod random;
mod round_trip;
