//! Access tokens as an identity provider issues them (the test bed's).

pub use xtask::testbed::tokens::SigningKey;

pub fn write_jwks(path: &std::path::Path, keys: &[&SigningKey]) {
    xtask::testbed::tokens::write_jwks(path, keys).expect("jwks");
}
