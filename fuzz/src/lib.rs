//! Fuzz target bodies, shared with the stable property tests in
//! `crates/hookline-creator/tests/fuzz_properties.rs`.

pub mod targets;
