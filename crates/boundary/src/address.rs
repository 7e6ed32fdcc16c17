//! Link-local and cloud metadata addresses: what a sandboxed process must
//! not reach through the proxy unless a rule names the host exactly (the
//! instance metadata service hands out cloud credentials).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// AWS's IPv6 metadata address.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// Whether `address` is link-local (169.254.0.0/16, fe80::/10) or a
/// metadata address (fd00:ec2::254), including IPv4 addresses written as
/// IPv6 (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`).
pub fn is_link_local_or_metadata(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            let embedded = v6.to_ipv4().or_else(|| nat64(v6));
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == AWS_METADATA_V6
                || embedded.is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// The IPv4 address inside a well-known-prefix NAT64 address (RFC 6052).
fn nat64(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
        .then(|| Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_metadata_addresses_in_every_spelling() {
        for forbidden in [
            "169.254.169.254",
            "169.254.0.1",
            "169.254.255.255",
            "fe80::1",
            "febf::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::169.254.169.254",
        ] {
            let address: IpAddr = forbidden.parse().unwrap();
            assert!(is_link_local_or_metadata(address), "{forbidden}");
        }
        for fine in [
            "127.0.0.1",
            "10.0.0.1",
            "169.253.255.255",
            "169.255.0.0",
            "::1",
            "fec0::1",
            "fd00:ec2::253",
            "::ffff:127.0.0.1",
            "2001:db8::1",
        ] {
            let address: IpAddr = fine.parse().unwrap();
            assert!(!is_link_local_or_metadata(address), "{fine}");
        }
    }
}
