//! Where a machine sold to a customer may not connect. A lease reaches the internet, but not the
//! provider's own network: private and carrier-grade NAT ranges (the provider's LAN, other
//! tenants), link-local space (where cloud metadata services hand out credentials), and the
//! addresses of the host it runs on. The local provisioner turns this list into routes that
//! refuse those destinations inside each lease's network namespace.

use ipnet::IpNet;
use std::net::IpAddr;

/// One refused destination range and why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedRange {
    pub net: IpNet,
    pub why: &'static str,
}

/// The ranges a lease may not reach unless the operator allows private egress.
pub fn blocked_ranges() -> Vec<BlockedRange> {
    [
        ("10.0.0.0/8", "a private network"),
        ("172.16.0.0/12", "a private network"),
        ("192.168.0.0/16", "a private network"),
        ("100.64.0.0/10", "carrier-grade NAT space"),
        (
            "169.254.0.0/16",
            "link-local space (cloud metadata services)",
        ),
        ("0.0.0.0/8", "this network"),
        ("fc00::/7", "a private network (unique local)"),
        ("fe80::/10", "link-local space"),
    ]
    .into_iter()
    .map(|(net, why)| BlockedRange {
        net: net.parse().expect("a valid range"),
        why,
    })
    .collect()
}

/// The host's own addresses, each as a single-address range: a lease reaching the host through
/// one of its interfaces would reach every service listening on all of them.
pub fn host_ranges(addresses: impl IntoIterator<Item = IpAddr>) -> Vec<BlockedRange> {
    addresses
        .into_iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| BlockedRange {
            net: IpNet::from(ip),
            why: "an address of the host",
        })
        .collect()
}

/// Why `ip` is refused by `blocked`, if it is.
pub fn refusal(blocked: &[BlockedRange], ip: IpAddr) -> Option<&'static str> {
    blocked.iter().find(|r| r.net.contains(&ip)).map(|r| r.why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_link_local_and_metadata_destinations_are_refused() {
        let blocked = blocked_ranges();
        for (address, why) in [
            ("10.1.2.3", "a private network"),
            ("172.31.255.255", "a private network"),
            ("192.168.0.1", "a private network"),
            ("100.100.100.200", "carrier-grade NAT space"),
            (
                "169.254.169.254",
                "link-local space (cloud metadata services)",
            ),
            ("fd00:ec2::254", "a private network (unique local)"),
            ("fe80::1", "link-local space"),
        ] {
            assert_eq!(refusal(&blocked, ip(address)), Some(why), "{address}");
        }
    }

    #[test]
    fn public_destinations_stay_reachable() {
        let blocked = blocked_ranges();
        for address in [
            "1.1.1.1",
            "172.32.0.1",
            "192.169.0.1",
            "100.128.0.1",
            "198.51.100.7",
            "2001:4860::1",
        ] {
            assert_eq!(refusal(&blocked, ip(address)), None, "{address}");
        }
    }

    #[test]
    fn the_hosts_own_addresses_are_refused_but_not_loopback() {
        let host = host_ranges([ip("203.0.113.9"), ip("127.0.0.1"), ip("2001:db8::9")]);
        assert_eq!(host.len(), 2, "loopback is the lease's own, not the host's");
        assert_eq!(
            refusal(&host, ip("203.0.113.9")),
            Some("an address of the host")
        );
        assert_eq!(
            refusal(&host, ip("2001:db8::9")),
            Some("an address of the host")
        );
        assert_eq!(refusal(&host, ip("203.0.113.10")), None);
    }

    #[test]
    fn every_refused_range_is_also_refused_to_webhooks() {
        // The two lists serve different doors but must agree on the provider's own network.
        for range in blocked_ranges() {
            let first = match range.net {
                IpNet::V4(n) => IpAddr::V4(n.network()),
                IpNet::V6(n) => IpAddr::V6(n.network()),
            };
            assert!(
                crate::webhook::forbidden_address(first).is_some(),
                "{} is refused to leases but not to webhooks",
                range.net
            );
        }
    }
}
