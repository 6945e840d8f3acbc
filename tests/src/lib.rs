//! Test helpers shared by every test in the repository: the definition of "no trace"
//! ([`snapshot`]), declarative trees ([`tree`]), copies of real images' trust stores
//! ([`fixtures`]), throwaway CAs ([`ca`]), benchmark data ([`mod@bench`]), cached real root
//! filesystems ([`rootfs`]), mounts made for one test ([`mount`]), and the end-to-end tests under
//! `tests/tests/`.

pub mod bench;
pub mod ca;
pub mod containers;
pub mod fixtures;
pub mod mount;
pub mod rootfs;
pub mod snapshot;
pub mod tree;

pub use snapshot::Snapshot;
pub use tree::{age, build, resolve, Node};
