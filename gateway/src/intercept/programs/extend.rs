//! Coverage extensions in the kernel's `PROTECTED` map: the local addresses a protected server
//! also listens on. Only what this file added is ever removed; configured destinations stay.

use std::{collections::BTreeSet, net::SocketAddr};

use gateway_common::DestKey;

use super::{map_mut, LoadedPrograms, ProgramsError};
use crate::intercept::attribution::addr_words;

impl LoadedPrograms {
    /// Makes the extension exactly `wanted`: adds what is new, removes what is gone.
    pub fn set_extended(&mut self, wanted: &BTreeSet<SocketAddr>) -> Result<(), ProgramsError> {
        let key = |addr: &SocketAddr| DestKey {
            addr: addr_words(addr.ip()),
            port: addr.port().into(),
        };
        let map_error = |source| ProgramsError::Map {
            name: "PROTECTED",
            source,
        };
        let mut protected = map_mut::<DestKey, u8>(&mut self.ebpf, "PROTECTED")?;
        for addr in wanted.difference(&self.extended) {
            protected.insert(key(addr), 1, 0).map_err(map_error)?;
        }
        for addr in self.extended.difference(wanted) {
            // A configured destination is never in `extended` (the plan leaves named ones out).
            let _ = protected.remove(&key(addr));
        }
        self.extended = wanted.clone();
        Ok(())
    }
}
