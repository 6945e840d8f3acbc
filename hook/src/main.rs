//! `cacerts-hook`: placeholder entry point, replaced by the CLI.
fn main() {}
