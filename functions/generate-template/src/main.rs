//! The `generate-template` Lambda: wiring only.
fn main() {}
