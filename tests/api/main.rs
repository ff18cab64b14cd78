//! confab's integration suite: one binary, every test against a real
//! server on a random port with its own database.

#[allow(dead_code)]
mod support;

mod messaging;
