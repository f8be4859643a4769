//! The gateway's XDP program: redirect the gateway's traffic to the AF_XDP
//! socket of the receiving queue, pass everything else (ARP, neighbour
//! discovery, traffic to the host itself) to the kernel.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::asm::{Alu, Asm, AsmError, Cond, Insn, Reg};

/// `XDP_PASS`.
pub const XDP_PASS: i32 = 2;
/// `XDP_TX`: returned instead of a redirect by test builds of the program.
pub const XDP_TX: i32 = 3;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

/// Which packets an interface's XDP program hands to the gateway.
///
/// 1. Non-IP frames (ARP, LLDP...) always go to the kernel.
/// 2. IPv4/IPv6 UDP to one of `udp_ports` (e.g. GENEVE 6081) is redirected,
///    whatever its destination address.
/// 3. Other IP traffic is redirected if `redirect_other_ip`, except traffic to
///    one of the `local_*` addresses (management: ssh to the gateway itself),
///    to multicast/broadcast (224.0.0.0/3, ff00::/8) or link-local (fe80::/10)
///    destinations, and ICMPv6 neighbour discovery (types 133-137), which go
///    to the kernel.
///
/// IPv6 extension headers are not walked: a UDP packet behind one is "other IP".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpFilter {
    /// UDP destination ports always redirected (at most 8).
    pub udp_ports: Vec<u16>,
    /// Redirect IP traffic that is not for a local address (a LAN interface).
    pub redirect_other_ip: bool,
    /// The host's own IPv4 addresses on this interface (at most 8).
    pub local_v4: Vec<Ipv4Addr>,
    /// The host's own IPv6 addresses on this interface (at most 8).
    pub local_v6: Vec<Ipv6Addr>,
    /// Test build: return `XDP_TX` instead of redirecting, so the verdict can
    /// be observed with `BPF_PROG_TEST_RUN`.
    pub test_verdict: bool,
    /// Redirect every frame (ARP, IPv6 ND, anything): an L2 bridge such as
    /// `mongate-bench linkem`. Overrides every other field but `test_verdict`.
    pub redirect_all: bool,
}

impl XdpFilter {
    /// A WAN (uplink) interface: only overlay UDP ports.
    pub fn wan(ports: &[u16]) -> Self {
        Self {
            udp_ports: ports.to_vec(),
            ..Self::default()
        }
    }
    /// Every frame, whatever its type or destination (an L2 bridge).
    pub fn all() -> Self {
        Self {
            redirect_all: true,
            ..Self::default()
        }
    }
    /// A LAN interface: all IP traffic except to the gateway's own addresses.
    pub fn lan(local_v4: &[Ipv4Addr], local_v6: &[Ipv6Addr]) -> Self {
        Self {
            redirect_other_ip: true,
            local_v4: local_v4.to_vec(),
            local_v6: local_v6.to_vec(),
            ..Self::default()
        }
    }
}

/// Why a filter cannot be compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProgramError {
    /// More than 8 ports or addresses.
    #[error("xdp filter: at most 8 ports and 8 addresses per family")]
    TooMany,
    /// Assembler error (a generator bug).
    #[error(transparent)]
    Asm(#[from] AsmError),
}

fn ne16(bytes: [u8; 2]) -> i32 {
    i32::from(u16::from_ne_bytes(bytes))
}
fn ne32(bytes: [u8; 4]) -> i32 {
    i32::from_ne_bytes(bytes)
}

/// Generates the program for `f`; `map_fd` is the XSKMAP (ignored by test builds).
pub fn xdp_redirect_program(f: &XdpFilter, map_fd: i32) -> Result<Vec<Insn>, ProgramError> {
    if f.udp_ports.len() > 8 || f.local_v4.len() > 8 || f.local_v6.len() > 8 {
        return Err(ProgramError::TooMany);
    }
    use Reg::*;
    let mut a = Asm::new();
    if f.redirect_all {
        // A separate straight-line program: the verifier refuses unreachable
        // instructions, so the filter's branches must not be emitted.
        if f.test_verdict {
            a.mov_imm(R0, XDP_TX).exit();
        } else {
            a.mov(R6, R1)
                .ldx_w(R2, R6, 16)
                .ld_map_fd(R1, map_fd)
                .mov_imm(R3, XDP_PASS)
                .call(BPF_FUNC_REDIRECT_MAP)
                .exit();
        }
        return Ok(a.finish()?);
    }
    let pass = a.label();
    let redirect = a.label();
    let v4 = a.label();
    let v6 = a.label();
    let v4_other = a.label();
    let v6_other = a.label();
    let v6_not_nd = a.label();

    a.mov(R6, R1).ldx_w(R2, R6, 0).ldx_w(R3, R6, 4);
    a.mov(R4, R2)
        .alu_imm(Alu::Add, R4, 14)
        .jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx_h(R5, R2, 12);
    a.jmp32_imm(Cond::Eq, R5, ne16([0x08, 0x00]), v4);
    a.jmp32_imm(Cond::Eq, R5, ne16([0x86, 0xdd]), v6);
    a.ja(pass);

    // IPv4
    a.bind(v4);
    a.mov(R4, R2)
        .alu_imm(Alu::Add, R4, 34)
        .jmp_reg(Cond::Gt, R4, R3, pass);
    if !f.udp_ports.is_empty() {
        a.ldx_b(R5, R2, 23).jmp32_imm(Cond::Ne, R5, 17, v4_other);
        // Fragment offset != 0: no UDP header here.
        a.ldx_h(R5, R2, 20)
            .alu_imm(Alu::And, R5, ne16([0x1f, 0xff]))
            .jmp32_imm(Cond::Ne, R5, 0, v4_other);
        a.ldx_b(R7, R2, 14)
            .alu_imm(Alu::And, R7, 0x0f)
            .alu_imm(Alu::Lsh, R7, 2);
        a.mov(R8, R2)
            .alu_imm(Alu::Add, R8, 14)
            .alu_reg(Alu::Add, R8, R7);
        a.mov(R9, R8)
            .alu_imm(Alu::Add, R9, 4)
            .jmp_reg(Cond::Gt, R9, R3, pass);
        a.ldx_h(R5, R8, 2);
        for p in &f.udp_ports {
            a.jmp32_imm(Cond::Eq, R5, ne16(p.to_be_bytes()), redirect);
        }
    }
    a.bind(v4_other);
    if !f.redirect_other_ip {
        a.ja(pass);
    } else {
        // Multicast, reserved and broadcast destinations (224.0.0.0/3) are the
        // kernel's (IGMP, mDNS, DHCP...).
        a.ldx_b(R5, R2, 30).jmp32_imm(Cond::Ge, R5, 224, pass);
        a.ldx_w(R5, R2, 30);
        for ip in &f.local_v4 {
            a.jmp32_imm(Cond::Eq, R5, ne32(ip.octets()), pass);
        }
        a.ja(redirect);
    }

    // IPv6
    a.bind(v6);
    a.mov(R4, R2)
        .alu_imm(Alu::Add, R4, 54)
        .jmp_reg(Cond::Gt, R4, R3, pass);
    a.ldx_b(R5, R2, 20);
    if !f.udp_ports.is_empty() {
        a.jmp32_imm(Cond::Ne, R5, 17, v6_other);
        a.mov(R4, R2)
            .alu_imm(Alu::Add, R4, 58)
            .jmp_reg(Cond::Gt, R4, R3, pass);
        a.ldx_h(R7, R2, 56);
        for p in &f.udp_ports {
            a.jmp32_imm(Cond::Eq, R7, ne16(p.to_be_bytes()), redirect);
        }
    }
    a.bind(v6_other);
    if !f.redirect_other_ip {
        a.ja(pass);
    } else {
        a.jmp32_imm(Cond::Ne, R5, 58, v6_not_nd);
        a.mov(R4, R2)
            .alu_imm(Alu::Add, R4, 55)
            .jmp_reg(Cond::Gt, R4, R3, pass);
        a.ldx_b(R7, R2, 54);
        a.jmp32_imm(Cond::Lt, R7, 133, v6_not_nd);
        a.jmp32_imm(Cond::Le, R7, 137, pass);
        a.bind(v6_not_nd);
        // Multicast (ff00::/8: MLD, ND) and link-local (fe80::/10) are the kernel's.
        a.ldx_b(R7, R2, 38).jmp32_imm(Cond::Eq, R7, 0xff, pass);
        let not_ll = a.label();
        a.jmp32_imm(Cond::Ne, R7, 0xfe, not_ll);
        a.ldx_b(R7, R2, 39)
            .alu_imm(Alu::And, R7, 0xc0)
            .jmp32_imm(Cond::Eq, R7, 0x80, pass);
        a.bind(not_ll);
        for ip in &f.local_v6 {
            let next = a.label();
            let o = ip.octets();
            for (i, off) in [38i16, 42, 46, 50].into_iter().enumerate() {
                let w = [o[i * 4], o[i * 4 + 1], o[i * 4 + 2], o[i * 4 + 3]];
                a.ldx_w(R7, R2, off).jmp32_imm(Cond::Ne, R7, ne32(w), next);
            }
            a.ja(pass);
            a.bind(next);
        }
        a.ja(redirect);
    }

    a.bind(redirect);
    if f.test_verdict {
        a.mov_imm(R0, XDP_TX).exit();
    } else {
        // bpf_redirect_map(xskmap, ctx->rx_queue_index, XDP_PASS): falls back to
        // the kernel when no socket is bound on this queue.
        a.ldx_w(R2, R6, 16)
            .ld_map_fd(R1, map_fd)
            .mov_imm(R3, XDP_PASS)
            .call(BPF_FUNC_REDIRECT_MAP)
            .exit();
    }
    a.bind(pass);
    a.mov_imm(R0, XDP_PASS).exit();
    Ok(a.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let f = XdpFilter {
            udp_ports: vec![1; 9],
            ..XdpFilter::default()
        };
        assert_eq!(xdp_redirect_program(&f, 3), Err(ProgramError::TooMany));
    }

    #[test]
    fn programs_assemble() {
        for f in [
            XdpFilter::wan(&[6081]),
            XdpFilter::lan(
                &[Ipv4Addr::new(198, 18, 0, 1)],
                &["2001:2::1".parse().unwrap()],
            ),
            XdpFilter {
                udp_ports: vec![6081, 9000],
                redirect_other_ip: true,
                ..XdpFilter::default()
            },
        ] {
            let p = xdp_redirect_program(&f, 7).unwrap();
            assert!(p.len() > 10 && p.len() < 200);
            assert_eq!(p.last().unwrap().code, 0x95);
        }
    }

    #[test]
    fn redirect_all_is_straight_line() {
        let p = xdp_redirect_program(&XdpFilter::all(), 7).unwrap();
        // mov, ldx, ld_map_fd (2 slots), mov, call, exit: no branch at all.
        assert_eq!(p.len(), 7);
        assert!(
            p.iter()
                .all(|i| i.code & 0x07 != 0x05 || i.code == 0x85 || i.code == 0x95)
        );
        assert_eq!(p.last().unwrap().code, 0x95);
    }
}
