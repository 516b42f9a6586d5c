//! The `webhook` Lambda: wiring only.
fn main() {}
