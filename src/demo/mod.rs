//! The demo's picture: an aligned face anyone can make (`dynface demo` is `cli/demo.rs`).

pub mod synthetic_face;
