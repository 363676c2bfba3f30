//! `pol`: compile, check, disassemble, load and test `.pol` policies.
fn main() {}
