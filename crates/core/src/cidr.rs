//! CIDR bindings (`token_bound_cidrs`, `secret_id_bound_cidrs`): is an address in one of them?

use std::net::IpAddr;

/// Parses `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128).
pub fn parse(cidr: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match cidr.trim().split_once('/') {
        Some((a, b)) => (a, b.parse::<u8>().ok()?),
        None => (cidr.trim(), 255),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = if bits == 255 { max } else { bits };
    (bits <= max).then_some((ip, bits))
}

pub fn contains(cidr: &str, address: &IpAddr) -> bool {
    let Some((net, bits)) = parse(cidr) else {
        return false;
    };
    match (net, address) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(*a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(*a) & mask
        }
        (IpAddr::V6(_), IpAddr::V4(a)) => contains(cidr, &IpAddr::V6(a.to_ipv6_mapped())),
        (IpAddr::V4(_), IpAddr::V6(a)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| contains(cidr, &IpAddr::V4(v4))),
    }
}

/// Whether `remote` (an address, possibly with a port) is inside any of `cidrs`. An unknown
/// remote address is never allowed: bindings fail closed.
pub fn allowed(cidrs: &[String], remote: Option<&str>) -> bool {
    let Some(remote) = remote else { return false };
    let ip: Option<IpAddr> = remote
        .parse()
        .ok()
        .or_else(|| remote.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()));
    let Some(ip) = ip else { return false };
    cidrs.iter().any(|c| contains(c, &ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership() {
        let cidrs = vec!["10.0.0.0/8".to_string(), "127.0.0.1".to_string()];
        assert!(allowed(&cidrs, Some("10.1.2.3")));
        assert!(allowed(&cidrs, Some("127.0.0.1:5555")));
        assert!(!allowed(&cidrs, Some("127.0.0.2")));
        assert!(!allowed(&cidrs, None));
        assert!(!allowed(&["bogus".to_string()], Some("10.0.0.1")));
        assert!(parse("10.0.0.0/33").is_none());
    }
}
