//! The local provisioner: each lease is an isolated Linux machine on this host.
pub mod image;
pub mod keys;
pub mod runner;
