//! No way around the gateway (privileged end-to-end): every local path an agent could take to a
//! protected server is intercepted or refused. The unix socket (`psql` without `-h`), every
//! local address of a server listening on a wildcard or on a second address of a veth pair,
//! both families, v4-mapped, by name, TCP Fast Open and io_uring, and an agent trying to leave
//! its cgroup. Run without root these fail, saying how to run them.

mod common;
mod local_paths {
    pub mod coverage;
    pub mod escape;
    pub mod unix;
}
