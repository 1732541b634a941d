//! Integration tests of fraudlens-model, one test binary (see STYLE.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod interop;
mod onnx;
