//! The SSRF guard: which IP addresses a program's `fetch` must not reach unless a rule
//! names them (`allowPrivate`), and a resolver that connects only to addresses checked
//! beforehand, so a DNS answer that changes between the check and the connection (DNS
//! rebinding) cannot slip a private address in.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Mutex,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What kind of address `ip` is, when programs must not reach it by default.
pub(super) fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let segments = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if segments[0] & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if segments[0] & 0xffc0 == 0xfe80 || segments[0] & 0xffc0 == 0xfec0 {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // NAT64: the IPv4 address rides in the last 32 bits.
                let [.., hi, lo] = segments;
                forbidden_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)))
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address (where cloud metadata services live)")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a carrier-grade NAT address")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("a broadcast, multicast or reserved address")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking address")
    } else {
        None
    }
}

/// Addresses checked by the guard, by host name; reqwest connects only to these.
#[derive(Debug, Default)]
pub(super) struct PinnedResolver {
    pins: Mutex<HashMap<String, Vec<SocketAddr>>>,
}

impl PinnedResolver {
    /// From now on, `host` connects to `addresses` (which the guard has checked).
    pub(super) fn pin(&self, host: &str, addresses: Vec<SocketAddr>) {
        if let Ok(mut pins) = self.pins.lock() {
            pins.insert(host.to_ascii_lowercase(), addresses);
        }
    }
}

/// A host reqwest asked about that the guard never checked.
#[derive(Debug, thiserror::Error)]
#[error("{0} was not checked by the egress guard")]
struct Unchecked(String);

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let pinned = self.pins.lock().ok().and_then(|p| p.get(&host).cloned());
        Box::pin(async move {
            match pinned {
                Some(addresses) => Ok(Box::new(addresses.into_iter()) as Addrs),
                None => Err(Box::new(Unchecked(host)) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_named() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(forbidden(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(forbidden(ip.parse().unwrap()).is_none(), "{ip}");
        }
    }
}
