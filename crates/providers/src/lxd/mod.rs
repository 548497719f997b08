//! The LXD/Incus provisioner (`fulfiller = "lxd"`): machines are system containers (or virtual
//! machines) of an LXD or Incus host or cluster, driven through its REST API. The engine holds
//! the machines, so they outlive any storefront process and every worker of a deployment can act
//! on every machine; each instance carries its service id (`user.storefront.service_id`), so a
//! retried job finds the instance it already created.

pub mod client;
mod provisioner;

pub use client::{Endpoint, LxdClient, LxdError};
pub use provisioner::{LxdOptions, LxdProvisioner};
