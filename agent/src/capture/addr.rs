//! Conversions between std socket addresses and the kernel's 16-byte, network-order,
//! v4-mapped representation (see `ward_common`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use ward_common::{OrigDst, SockTuple, is_v4_mapped};

/// An address as the kernel programs store it: IPv4 v4-mapped, words in network byte order.
pub fn words(ip: IpAddr) -> [u32; 4] {
    let octets = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let mut w = [0u32; 4];
    for (i, chunk) in octets.chunks_exact(4).enumerate() {
        w[i] = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    w
}

/// Back from [`words`]: v4-mapped becomes IPv4.
pub fn ip(words: [u32; 4]) -> IpAddr {
    let mut octets = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        octets[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    if is_v4_mapped(&words) {
        IpAddr::V4(Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(octets))
    }
}

/// An IPv4 address in network byte order, as `user_ip4`.
pub fn ip4_be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// The key under which sock_ops recorded a captured connection: the client's view, where the
/// agent's peer is the client's local end and the agent's local address is the client's remote.
pub fn client_tuple(peer: SocketAddr, local: SocketAddr) -> SockTuple {
    SockTuple {
        local_addr: words(peer.ip()),
        remote_addr: words(local.ip()),
        local_port: peer.port(),
        remote_port: local.port(),
    }
}

pub fn orig_dst(o: &OrigDst) -> SocketAddr {
    match ip(o.addr) {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), o.port),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, o.port, 0, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_mapped_share_a_representation() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(words(v4), words(mapped));
        assert_eq!(ip(words(mapped)), v4, "mapped addresses come back as IPv4");
        assert_eq!(words(v4)[3], ip4_be("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn v6_round_trips() {
        let v6: IpAddr = "fd00:1:2::5".parse().unwrap();
        assert_eq!(ip(words(v6)), v6);
    }

    #[test]
    fn client_tuple_swaps_sides() {
        let peer: SocketAddr = "[::ffff:10.0.0.2]:40000".parse().unwrap();
        let local: SocketAddr = "10.0.0.1:15001".parse().unwrap();
        let t = client_tuple(peer, local);
        assert_eq!(t.local_port, 40000);
        assert_eq!(t.remote_port, 15001);
        assert_eq!(ip(t.local_addr), "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(ip(t.remote_addr), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
