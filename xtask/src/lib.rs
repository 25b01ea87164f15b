//! Shared by `cargo xtask` and the gateway's end-to-end tests: a real, throwaway test bed, and
//! the clients' own test suites run through it.

pub mod client_suites;
pub mod testbed;
