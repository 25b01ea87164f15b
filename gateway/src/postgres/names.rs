//! Names a session defines on the server (prepared statements, cursors, portals) and what
//! they stand for, believed only as far as the server's answers bear it out.

mod named;
mod pending;

pub use named::Named;
pub use pending::PendingReleases;
