//! Shared by `cargo xtask` and the gateway's end-to-end tests: a real, throwaway test bed.

pub mod testbed;
