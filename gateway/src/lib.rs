//! Tollgate's gateway as a library: the daemon (`app`), its configuration, interception,
//! the PostgreSQL session, policy and SQL analysis. The `tollgate` binary is its command line;
//! the benchmarks measure the pieces directly.

pub mod admin;
pub mod app;
pub mod approval;
pub mod audit;
pub mod classified;
pub mod clock;
pub mod config;
pub mod drain;
pub mod durable;
pub mod identity;
pub mod intercept;
pub mod logging;
pub mod net;
pub mod policy;
pub mod postgres;
pub mod proxy;
pub mod sql;
pub mod status;
