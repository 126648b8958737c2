//! The conformance-style tests and their runner, as a library: the `keelson-conformance`
//! binary drives it, and the e2e suite shares its test helpers ([`framework`]).

pub mod framework;
pub mod junit;
pub mod runner;
pub mod tests;
