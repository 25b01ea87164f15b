//! The gateway's own decoder sources, compiled into the fuzz targets unchanged.

#[path = "../../src/postgres/codec.rs"]
pub mod codec;
#[path = "../../src/postgres/errors.rs"]
pub mod errors;
#[path = "../../src/postgres/frame.rs"]
pub mod frame;
#[path = "../../src/postgres/scram.rs"]
pub mod scram;
#[path = "../../src/postgres/startup.rs"]
pub mod startup;
#[path = "../../src/postgres/encoding.rs"]
pub mod encoding;
