//! The local provisioner: each lease is an isolated Linux machine on this host — a shared
//! read-only Debian root with a private overlay layer, its own user, mount, PID, UTS and IPC
//! namespaces, and OpenSSH's sshd as its PID 1 on a loopback port.

pub mod cgroups;
pub mod image;
pub mod keys;
mod provisioner;
pub mod runner;

pub use provisioner::{probe_host, LocalOptions, LocalProvisioner};
