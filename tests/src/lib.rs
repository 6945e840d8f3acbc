//! Test helpers shared by every test in the repository: the definition of "no trace"
//! ([`snapshot`]), declarative trees ([`tree`]), and the end-to-end tests under `tests/tests/`.

pub mod snapshot;
pub mod tree;

pub use snapshot::Snapshot;
pub use tree::{age, build, Node};
