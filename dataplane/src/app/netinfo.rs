//! What the gateway asks the kernel at start-up, in the calling thread's
//! network namespace: interface MACs and addresses (with prefix lengths),
//! and IPv4 neighbours (resolved through the kernel's ARP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::{Duration, Instant};

use crate::wire::ethernet::MacAddr;

/// One address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length of its subnet.
    pub prefix_len: u8,
}

impl IfAddr {
    /// Whether `other` is inside this address's subnet (on-link).
    pub fn on_link(&self, other: IpAddr) -> bool {
        match (self.addr, other) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let n = u32::from(self.prefix_len.min(32));
                let mask = if n == 0 { 0 } else { u32::MAX << (32 - n) };
                a.to_bits() & mask == b.to_bits() & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let n = u32::from(self.prefix_len.min(128));
                let mask = if n == 0 { 0 } else { u128::MAX << (128 - n) };
                a.to_bits() & mask == b.to_bits() & mask
            }
            _ => false,
        }
    }
}

/// The MAC address of `ifname` (SIOCGIFHWADDR).
pub fn iface_mac(ifname: &str) -> anyhow::Result<MacAddr> {
    let mut req: libc::ifreq = zeroed_ifreq();
    let bytes = ifname.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() {
        anyhow::bail!("{ifname}: no such interface (see `ip link`)");
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = libc::c_char::from_ne_bytes([*s]);
    }
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        anyhow::bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; the kernel
    // writes the hardware address into it.
    let r = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(fd) };
    if r != 0 {
        anyhow::bail!("{ifname}: no such interface (see `ip link`)");
    }
    // SAFETY: SIOCGIFHWADDR filled the ifru_hwaddr member of the union.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, c) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = c.to_ne_bytes()[0];
    }
    Ok(MacAddr(mac))
}

/// The receive queues of `ifname` in use (ETHTOOL_GCHANNELS: combined plus
/// receive-only channels, in the calling thread's network namespace,
/// through `mongate-hwconfig`'s ethtool socket); `None` when the driver
/// does not say.
pub fn rx_queues(ifname: &str) -> Option<u32> {
    let sock = mongate_hwconfig::discover::ethtool::EthtoolSocket::open().ok()?;
    let ch = sock.channels(ifname).ok()?;
    Some(ch.rx.saturating_add(ch.combined))
}

fn zeroed_ifreq() -> libc::ifreq {
    // SAFETY: ifreq is a C struct of integers/arrays/unions for which all
    // zero bytes is a valid value.
    unsafe { std::mem::zeroed() }
}

fn prefix_len(mask: &[u8]) -> u8 {
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    u8::try_from(ones).unwrap_or(0)
}

/// The addresses of `ifname` (getifaddrs), IPv4 and IPv6.
pub fn iface_addrs(ifname: &str) -> anyhow::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        anyhow::bail!("getifaddrs: {}", std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != ifname.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of its family.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: the family says it is a sockaddr_in; netmask likewise when set.
            let (a, m) = unsafe {
                let a = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                let m = (!ifa.ifa_netmask.is_null()).then(|| {
                    (*ifa.ifa_netmask.cast::<libc::sockaddr_in>())
                        .sin_addr
                        .s_addr
                });
                (a.sin_addr.s_addr, m)
            };
            out.push(IfAddr {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from_be(a))),
                prefix_len: m.map_or(32, |m| prefix_len(&m.to_ne_bytes())),
            });
        } else if family == libc::AF_INET6 {
            // SAFETY: the family says it is a sockaddr_in6; netmask likewise when set.
            let (a, m) = unsafe {
                let a = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                let m = (!ifa.ifa_netmask.is_null()).then(|| {
                    (*ifa.ifa_netmask.cast::<libc::sockaddr_in6>())
                        .sin6_addr
                        .s6_addr
                });
                (a.sin6_addr.s6_addr, m)
            };
            out.push(IfAddr {
                addr: IpAddr::V6(Ipv6Addr::from(a)),
                prefix_len: m.map_or(128, |m| prefix_len(&m)),
            });
        }
    }
    // SAFETY: frees the list getifaddrs allocated; no reference outlives it.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The kernel's complete IPv4 neighbours on `ifname` (`/proc/thread-self/net/arp`).
pub fn arp_table(ifname: &str) -> Vec<(Ipv4Addr, MacAddr)> {
    let Ok(text) = std::fs::read_to_string("/proc/thread-self/net/arp") else {
        return Vec::new();
    };
    parse_arp(&text, ifname)
}

/// Parses `/proc/net/arp` (header line, then "IP HWtype Flags HWaddr Mask
/// Device"); entries without the "complete" flag are left out.
pub fn parse_arp(text: &str, ifname: &str) -> Vec<(Ipv4Addr, MacAddr)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[5] != ifname {
                return None;
            }
            let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
            if flags & 0x2 == 0 {
                return None;
            }
            let ip: Ipv4Addr = f[0].parse().ok()?;
            let mac: MacAddr = f[3].parse().ok()?;
            (mac.0 != [0; 6]).then_some((ip, mac))
        })
        .collect()
}

/// The MAC of IPv4 neighbour `ip` on `ifname`: from the kernel's table, or
/// after making the kernel resolve it (a datagram to its discard port),
/// waiting at most `timeout`.
pub fn resolve_v4(ifname: &str, ip: Ipv4Addr, timeout: Duration) -> anyhow::Result<MacAddr> {
    let find = || {
        arp_table(ifname)
            .into_iter()
            .find(|(a, _)| *a == ip)
            .map(|e| e.1)
    };
    if let Some(m) = find() {
        return Ok(m);
    }
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    bind_to_device(&sock, ifname)?;
    let start = Instant::now();
    let mut next_send = start;
    while start.elapsed() < timeout {
        if Instant::now() >= next_send {
            // The kernel queues the datagram while it resolves the address;
            // a failure (no route yet) is retried.
            let _ = sock.send_to(b"mongate-arp", (ip, 9));
            next_send = Instant::now() + Duration::from_millis(200);
        }
        if let Some(m) = find() {
            return Ok(m);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    anyhow::bail!(
        "{ifname}: no ARP answer from {ip} within {} ms (is the peer up? set `gateway_mac` in the uplink to skip resolution)",
        timeout.as_millis()
    )
}

fn bind_to_device(sock: &UdpSocket, ifname: &str) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let name = ifname.as_bytes();
    let len = libc::socklen_t::try_from(name.len())?;
    // SAFETY: setsockopt reads `len` bytes of the interface name.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            len,
        )
    };
    if r != 0 {
        anyhow::bail!(
            "{ifname}: SO_BINDTODEVICE: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_parse() {
        let t = "IP address       HW type     Flags       HW address            Mask     Device\n\
                 198.18.0.2       0x1         0x2         02:aa:bb:cc:dd:ee     *        lan0\n\
                 198.18.0.3       0x1         0x0         00:00:00:00:00:00     *        lan0\n\
                 198.19.0.2       0x1         0x6         02:11:22:33:44:55     *        wan0\n\
                 garbage\n";
        let v = parse_arp(t, "lan0");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(v[0].1, MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));
        assert_eq!(parse_arp(t, "wan0").len(), 1);
        assert!(parse_arp("", "lan0").is_empty());
    }

    #[test]
    fn on_link() {
        let a = IfAddr {
            addr: "198.19.128.1".parse().unwrap(),
            prefix_len: 30,
        };
        assert!(a.on_link("198.19.128.2".parse().unwrap()));
        assert!(!a.on_link("198.19.128.5".parse().unwrap()));
        assert!(!a.on_link("2001:db8::1".parse().unwrap()));
        let z = IfAddr {
            addr: "2001:db8::1".parse().unwrap(),
            prefix_len: 64,
        };
        assert!(z.on_link("2001:db8::ffff".parse().unwrap()));
        assert!(!z.on_link("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn loopback_addrs() {
        let v = iface_addrs("lo").unwrap();
        assert!(v.iter().any(|a| a.addr == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
