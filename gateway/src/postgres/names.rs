//! Names a session defines on the server (prepared statements, cursors, portals) and what
//! they stand for, believed only as far as the server's answers bear it out.

mod named;
mod table;
#[cfg(test)]
mod tests;

pub use named::Named;
pub use table::{Answered, Effect, Marks, Portal, Prepared, SessionNames};
