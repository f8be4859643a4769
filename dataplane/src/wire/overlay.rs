//! The overlay encapsulation: outer Ethernet (+ optional 802.1Q tag) + IPv4 or
//! IPv6 + UDP (destination port 6081) + GENEVE + mongate's flow option
//! [+ security option], in front of an inner frame [+ 16-byte AEAD tag].
//!
//! Fast path: an [`OverlayTemplate`] is built once per (uplink, peer address)
//! with every constant byte in place and the constant parts of the checksums
//! pre-summed; [`OverlayTemplate::encap`] then copies it into the frame's
//! headroom and patches lengths, the IPv4 id and checksum, the UDP source port
//! (flow entropy), the flow option and, over IPv6 (or when configured over
//! IPv4), the UDP checksum. [`decap`] parses and validates the whole stack and
//! returns where the inner frame is plus the overlay metadata.
//!
//! GENEVE protocol type: data packets carry the template's inner protocol
//! (0x6558, an Ethernet frame) in the clear and [`SEALED_PROTOCOL`] when
//! sealed; OAM messages carry [`oam::OAM_PROTOCOL`], sealed or not.

use core::net::IpAddr;
use core::ops::Range;

use super::ethernet::{self, MacAddr, VlanTag, ethertype};
use super::geneve::{
    self, AEAD_TAG_LEN, FLOW_OPTION_LEN, FlowOption, SECURITY_OPTION_LEN, SecurityOption,
};
use super::ipv4::protocol;
use super::{
    Error, Result, checksum, ipv4, ipv6, oam, read_u32, shifted, udp, write_u16, write_u32,
    write_u64,
};

/// Largest header a template holds (18 + 40 + 8 + 8 + 24 + 16 = 114, rounded up).
pub const MAX_HEADER_LEN: usize = 128;
/// Bytes the overlay adds in front of the inner frame over IPv4, untagged, no
/// security: Ethernet 14 + IPv4 20 + UDP 8 + GENEVE 8 + flow option 24.
pub const OVERHEAD_V4: usize = ethernet::HEADER_LEN
    + ipv4::HEADER_LEN
    + udp::HEADER_LEN
    + geneve::HEADER_LEN
    + FLOW_OPTION_LEN;
/// The same over IPv6: 94.
pub const OVERHEAD_V6: usize = ethernet::HEADER_LEN
    + ipv6::HEADER_LEN
    + udp::HEADER_LEN
    + geneve::HEADER_LEN
    + FLOW_OPTION_LEN;
/// Extra bytes with security: option 16 in front + tag 16 behind.
pub const SECURITY_OVERHEAD: usize = SECURITY_OPTION_LEN + AEAD_TAG_LEN;
/// GENEVE protocol type of sealed data (IEEE 802 Local Experimental
/// EtherType 2, 0x88B6), which a secure template writes instead of its
/// inner protocol. The payload of a sealed data packet is ciphertext, not
/// an Ethernet frame: labelled 0x6558 an analyser (tshark) would dissect
/// random bytes as Ethernet and flag some frames malformed; 0x88B6 it shows
/// as plain data. Nothing is lost: the plaintext of sealed data is always
/// the template's inner protocol (an Ethernet frame), and the protocol
/// field is in the AEAD's associated data, so it cannot be rewritten.
pub const SEALED_PROTOCOL: u16 = ethertype::LOCAL_EXPERIMENTAL_2;
/// Lowest UDP source port used (RFC 6335 dynamic range 49152..=65535).
pub const SOURCE_PORT_BASE: u16 = 49152;

/// The UDP source port for a flow hash: in 49152..=65535 (RFC 8926 3.3
/// recommends entropy there for ECMP), the hash's two halves folded.
#[inline]
pub const fn source_port(entropy: u32) -> u16 {
    let [a, b, c, d] = entropy.to_be_bytes();
    let folded = u16::from_be_bytes([a ^ c, b ^ d]);
    SOURCE_PORT_BASE | (folded & 0x3FFF)
}

/// What a template is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateConfig {
    /// Our uplink's MAC.
    pub src_mac: MacAddr,
    /// Next hop's MAC (the uplink's gateway).
    pub dst_mac: MacAddr,
    /// Outer 802.1Q tag, if the uplink is tagged.
    pub vlan: Option<VlanTag>,
    /// Our uplink address.
    pub src_ip: IpAddr,
    /// The peer gateway's address (same family as `src_ip`).
    pub dst_ip: IpAddr,
    /// The peer gateway's UDP port (6081 unless a NAT or a roaming peer
    /// says otherwise).
    pub dst_port: u16,
    /// Outer TTL / hop limit.
    pub ttl: u8,
    /// Outer DSCP/ECN (traffic class).
    pub tos: u8,
    /// GENEVE VNI (24 bits).
    pub vni: u32,
    /// GENEVE protocol type of data packets (default 0x6558, an Ethernet
    /// frame); a secure template's data packets carry [`SEALED_PROTOCOL`]
    /// instead (this stays the protocol of their plaintext).
    pub inner_protocol: u16,
    /// Reserve the security option and the AEAD tag trailer.
    pub secure: bool,
    /// Compute the UDP checksum over IPv4 too (otherwise 0, RFC 8926 allows it);
    /// over IPv6 it is always computed.
    pub udp_checksum_v4: bool,
}

impl TemplateConfig {
    /// Defaults: untagged, TTL 64, TOS 0, VNI 0, Ethernet inner, no security,
    /// no UDP checksum over IPv4.
    pub const fn new(src_mac: MacAddr, dst_mac: MacAddr, src_ip: IpAddr, dst_ip: IpAddr) -> Self {
        Self {
            src_mac,
            dst_mac,
            vlan: None,
            src_ip,
            dst_ip,
            dst_port: geneve::UDP_PORT,
            ttl: 64,
            tos: 0,
            vni: 0,
            inner_protocol: ethertype::TEB,
            secure: false,
            udp_checksum_v4: false,
        }
    }
}

/// Per-packet values for [`OverlayTemplate::encap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EncapParams {
    /// Flow option: flow id, sequence, send timestamp.
    pub flow: FlowOption,
    /// Flow hash: UDP source port and IPv6 flow label.
    pub entropy: u32,
    /// OAM message instead of data: O bit set, protocol [`oam::OAM_PROTOCOL`].
    pub oam: bool,
    /// Security option values (used only by secure templates).
    pub security: SecurityOption,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// Precomputed outer headers for one (uplink, peer address).
#[derive(Clone, Debug)]
pub struct OverlayTemplate {
    hdr: [u8; MAX_HEADER_LEN],
    len: usize,
    ip_off: usize,
    udp_off: usize,
    geneve_off: usize,
    flow_off: usize,
    sec_off: usize,
    family: Family,
    /// IPv4: sum of the header with total length, id and checksum zero.
    ip4_sum: u16,
    /// Pseudo-header sum without the length.
    pseudo_sum: u16,
    udp_checksum: bool,
    secure: bool,
    /// What it was built from (for [`OverlayTemplate::with_remote`]).
    cfg: TemplateConfig,
}

impl OverlayTemplate {
    /// Builds the template. Mixed address families or a VNI over 24 bits are
    /// [`Error::Malformed`].
    pub fn new(cfg: &TemplateConfig) -> Result<Self> {
        let mut hdr = [0u8; MAX_HEADER_LEN];
        let family = match (cfg.src_ip, cfg.dst_ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => Family::V4,
            (IpAddr::V6(_), IpAddr::V6(_)) => Family::V6,
            _ => return Err(Error::Malformed),
        };
        let eth = ethernet::Repr {
            src: cfg.src_mac,
            dst: cfg.dst_mac,
            vlan: cfg.vlan,
            ethertype: if family == Family::V4 {
                ethertype::IPV4
            } else {
                ethertype::IPV6
            },
        };
        let ip_off = eth.emit(&mut hdr)?;
        let (udp_off, ip4_sum, pseudo_sum) = match (cfg.src_ip, cfg.dst_ip) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let r = ipv4::Repr {
                    src,
                    dst,
                    protocol: protocol::UDP,
                    payload_len: 0,
                    ttl: cfg.ttl,
                    tos: cfg.tos,
                    ident: 0,
                    dont_frag: true,
                };
                let n = r.emit(&mut hdr[ip_off..])?;
                let h = &mut hdr[ip_off..ip_off + n];
                write_u16(h, ipv4::field::TOTAL_LEN, 0);
                write_u16(h, ipv4::field::CHECKSUM, 0);
                (
                    ip_off + n,
                    checksum::data(h),
                    checksum::pseudo_header_v4(src, dst, protocol::UDP, 0),
                )
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let r = ipv6::Repr {
                    src,
                    dst,
                    next_header: protocol::UDP,
                    payload_len: 0,
                    hop_limit: cfg.ttl,
                    traffic_class: cfg.tos,
                    flow_label: 0,
                };
                let n = r.emit(&mut hdr[ip_off..])?;
                (
                    ip_off + n,
                    0,
                    checksum::pseudo_header_v6(src, dst, protocol::UDP, 0),
                )
            }
            _ => return Err(Error::Malformed),
        };
        let geneve_off = udp_off
            + udp::Repr {
                src_port: 0,
                dst_port: geneve::UDP_PORT,
            }
            .emit(&mut hdr[udp_off..], 0)?;
        let g = geneve::Repr {
            oam: false,
            // Written once here: every packet of a secure template is sealed.
            protocol: if cfg.secure {
                SEALED_PROTOCOL
            } else {
                cfg.inner_protocol
            },
            vni: cfg.vni,
            options: geneve::Options {
                flow: Some(FlowOption::default()),
                security: cfg.secure.then(SecurityOption::default),
            },
        };
        let len = geneve_off + g.emit(&mut hdr[geneve_off..])?;
        let flow_off = geneve_off + geneve::HEADER_LEN;
        Ok(Self {
            hdr,
            len,
            ip_off,
            udp_off,
            geneve_off,
            flow_off,
            sec_off: flow_off + FLOW_OPTION_LEN,
            family,
            ip4_sum,
            pseudo_sum,
            udp_checksum: family == Family::V6 || cfg.udp_checksum_v4,
            secure: cfg.secure,
            cfg: *cfg,
        })
    }

    /// The same template toward another remote address and UDP port (a
    /// roamed peer, an answer to a handshake's source). Errors as
    /// [`OverlayTemplate::new`].
    pub fn with_remote(&self, dst_ip: IpAddr, dst_port: u16) -> Result<Self> {
        Self::new(&TemplateConfig {
            dst_ip,
            dst_port,
            ..self.cfg
        })
    }

    /// What the template was built from.
    pub const fn config(&self) -> &TemplateConfig {
        &self.cfg
    }

    /// The remote address and UDP port it sends to.
    pub const fn remote(&self) -> (IpAddr, u16) {
        (self.cfg.dst_ip, self.cfg.dst_port)
    }

    /// Reserves the security option and the tag.
    pub const fn secure(&self) -> bool {
        self.secure
    }

    /// Offset of the GENEVE header in an encapsulated frame: the AEAD's
    /// associated data runs from it to [`OverlayTemplate::header_len`].
    pub const fn geneve_offset(&self) -> usize {
        self.geneve_off
    }

    /// Bytes written in front of the inner frame (the headroom needed).
    pub const fn header_len(&self) -> usize {
        self.len
    }
    /// Bytes written after the inner frame (the AEAD tag; 0 when not secure).
    pub const fn trailer_len(&self) -> usize {
        if self.secure { AEAD_TAG_LEN } else { 0 }
    }
    /// Total bytes added to each inner frame.
    pub const fn overhead(&self) -> usize {
        self.header_len() + self.trailer_len()
    }
    /// Largest inner frame that fits a link whose IP MTU is `link_mtu` (the
    /// outer Ethernet header is not counted by the MTU).
    pub const fn max_inner_len(&self, link_mtu: usize) -> usize {
        link_mtu.saturating_sub(self.overhead() - self.ip_off)
    }
    /// The constant header bytes (lengths, ids, checksums and flow fields zero).
    pub fn header_bytes(&self) -> &[u8] {
        &self.hdr[..self.len]
    }

    /// Encapsulates in place. `buf[inner_off..inner_off + inner_len]` holds
    /// the inner frame (an OAM message when `p.oam`); the headers are written
    /// into the `header_len()` bytes before it (and, when secure, a zeroed tag
    /// into the 16 bytes after it, for the AEAD stage to fill). Returns the
    /// range of the outer frame in `buf`.
    ///
    /// The UDP checksum, when computed, covers the bytes as they are now; a
    /// frame to be sealed is encapsulated with
    /// [`OverlayTemplate::encap_to_seal`] instead.
    #[inline]
    pub fn encap(
        &self,
        buf: &mut [u8],
        inner_off: usize,
        inner_len: usize,
        p: &EncapParams,
    ) -> Result<Range<usize>> {
        let r = self.encap_to_seal(buf, inner_off, inner_len, p)?;
        self.finish_udp_checksum(&mut buf[r.clone()]);
        Ok(r)
    }

    /// Writes the UDP checksum of an encapsulated frame `out` (the range
    /// [`OverlayTemplate::encap_to_seal`] returned) when the template uses
    /// one: after sealing, since it covers the ciphertext and tag.
    #[inline]
    pub fn finish_udp_checksum(&self, out: &mut [u8]) {
        if !self.udp_checksum || out.len() < self.geneve_off {
            return;
        }
        let u = self.udp_off;
        let udp_len = u16::try_from(out.len() - u).unwrap_or(u16::MAX);
        write_u16(out, shifted(udp::field::CHECKSUM, u), 0);
        let sum = checksum::combine(&[self.pseudo_sum, udp_len, checksum::data(&out[u..])]);
        write_u16(
            out,
            shifted(udp::field::CHECKSUM, u),
            udp::wire_checksum(checksum::finish(sum)),
        );
    }

    /// [`OverlayTemplate::encap`] without the UDP checksum (left zero), for
    /// the AEAD stage to seal and then call
    /// [`OverlayTemplate::finish_udp_checksum`]. Every field of the GENEVE
    /// header and options (the associated data) is final when it returns:
    /// for a secure template the protocol is [`SEALED_PROTOCOL`] (data) or
    /// [`oam::OAM_PROTOCOL`] (OAM).
    #[inline]
    pub fn encap_to_seal(
        &self,
        buf: &mut [u8],
        inner_off: usize,
        inner_len: usize,
        p: &EncapParams,
    ) -> Result<Range<usize>> {
        let hl = self.len;
        let start = inner_off.checked_sub(hl).ok_or(Error::NoRoom)?;
        let end = inner_off
            .checked_add(inner_len)
            .and_then(|e| e.checked_add(self.trailer_len()))
            .ok_or(Error::TooBig)?;
        let out = buf.get_mut(start..end).ok_or(Error::NoRoom)?;
        let udp_len = u16::try_from(out.len() - self.udp_off).map_err(|_| Error::TooBig)?;
        let ip_len = u16::try_from(out.len() - self.ip_off).map_err(|_| Error::TooBig)?;
        out[..hl].copy_from_slice(&self.hdr[..hl]);
        let ip = self.ip_off;
        match self.family {
            Family::V4 => {
                // With DF set the id only needs to be unique-ish (RFC 6864): low bits of seq.
                let [.., hi, lo] = p.flow.seq.to_be_bytes();
                let ident = u16::from_be_bytes([hi, lo]);
                write_u16(out, shifted(ipv4::field::TOTAL_LEN, ip), ip_len);
                write_u16(out, shifted(ipv4::field::IDENT, ip), ident);
                let sum =
                    checksum::fold(u64::from(self.ip4_sum) + u64::from(ip_len) + u64::from(ident));
                write_u16(
                    out,
                    shifted(ipv4::field::CHECKSUM, ip),
                    checksum::finish(sum),
                );
            }
            Family::V6 => {
                write_u16(out, shifted(ipv6::field::PAYLOAD_LEN, ip), udp_len);
                let vtf = shifted(ipv6::field::VER_TC_FLOW, ip);
                let w =
                    (read_u32(&self.hdr, vtf.clone()) & 0xFFF0_0000) | (p.entropy & 0x000F_FFFF);
                write_u32(out, vtf, w);
            }
        }
        let u = self.udp_off;
        write_u16(
            out,
            shifted(udp::field::SRC_PORT, u),
            source_port(p.entropy),
        );
        write_u16(out, shifted(udp::field::LENGTH, u), udp_len);
        if p.oam {
            out[self.geneve_off + geneve::field::FLAGS] |= geneve::FLAG_O;
            write_u16(
                out,
                shifted(geneve::field::PROTOCOL, self.geneve_off),
                oam::OAM_PROTOCOL,
            );
        }
        let f = self.flow_off + geneve::OPTION_HEADER_LEN;
        write_u32(out, shifted(geneve::field::FLOW_ID, f), p.flow.flow_id);
        write_u64(out, shifted(geneve::field::FLOW_SEQ, f), p.flow.seq);
        write_u64(
            out,
            shifted(geneve::field::FLOW_TIMESTAMP, f),
            p.flow.timestamp_ns,
        );
        if self.secure {
            let s = self.sec_off + geneve::OPTION_HEADER_LEN;
            write_u32(
                out,
                shifted(geneve::field::SEC_RECEIVER, s),
                p.security.receiver_index,
            );
            write_u64(
                out,
                shifted(geneve::field::SEC_COUNTER, s),
                p.security.counter,
            );
            let tag_at = out.len() - AEAD_TAG_LEN;
            out[tag_at..].fill(0);
        }
        Ok(start..end)
    }
}

/// What [`decap`] found in the outer headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverlayMeta {
    /// Outer source MAC.
    pub src_mac: MacAddr,
    /// Outer destination MAC.
    pub dst_mac: MacAddr,
    /// Outer 802.1Q tag.
    pub vlan: Option<VlanTag>,
    /// Outer source address (the peer's uplink).
    pub outer_src: IpAddr,
    /// Outer destination address (our uplink).
    pub outer_dst: IpAddr,
    /// Outer DSCP/ECN (for ECN decapsulation, RFC 6040).
    pub outer_tos: u8,
    /// Outer TTL / hop limit.
    pub outer_ttl: u8,
    /// UDP source port (the sender's flow entropy).
    pub src_port: u16,
    /// GENEVE VNI.
    pub vni: u32,
    /// O bit: the inner bytes are an OAM message.
    pub oam: bool,
    /// GENEVE protocol type of the inner bytes ([`SEALED_PROTOCOL`] for
    /// sealed data).
    pub protocol: u16,
    /// mongate flow option.
    pub flow: Option<FlowOption>,
    /// mongate security option: when present the inner bytes are ciphertext.
    pub security: Option<SecurityOption>,
    /// Offset of the GENEVE header: `geneve_off..inner.start` is the AEAD
    /// associated data (GENEVE header and all options).
    pub geneve_off: usize,
}

/// Result of [`decap`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decapped {
    /// The inner frame (or OAM message, or ciphertext) within the buffer.
    pub inner: Range<usize>,
    /// The AEAD tag within the buffer (empty without the security option).
    pub tag: Range<usize>,
    /// Outer header values.
    pub meta: OverlayMeta,
}

/// The wire flow id of an overlay frame whose first GENEVE option is
/// mongate's flow option (as every frame of ours: the templates put it
/// first), read at its place without checking anything else: a hint for
/// prefetching before [`decap`], which decides what the frame is. `None`
/// for anything else (never panics, any bytes).
#[inline]
pub fn peek_flow_id(frame: &[u8]) -> Option<u32> {
    let mut off = ethernet::HEADER_LEN;
    let mut et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if et == ethertype::VLAN {
        et = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        off += 4;
    }
    let udp = match et {
        ethertype::IPV4 => {
            let vihl = *frame.get(off)?;
            if *frame.get(off + 9)? != protocol::UDP {
                return None;
            }
            off + usize::from(vihl & 0x0F) * 4
        }
        ethertype::IPV6 => {
            if *frame.get(off + 6)? != protocol::UDP {
                return None;
            }
            off + ipv6::HEADER_LEN
        }
        _ => return None,
    };
    let g = udp + udp::HEADER_LEN;
    let opt = g + geneve::HEADER_LEN;
    let class = u16::from_be_bytes([*frame.get(opt)?, *frame.get(opt + 1)?]);
    if *frame.get(g)? & 0x3F == 0
        || class != geneve::MONGATE_CLASS
        || *frame.get(opt + 2)? != geneve::FLOW_OPTION_TYPE
    {
        return None;
    }
    let id = frame.get(opt + 4..opt + 8)?;
    Some(u32::from_be_bytes([id[0], id[1], id[2], id[3]]))
}

/// Parses and validates an outer frame: Ethernet (one optional tag), IPv4
/// (header checksum verified; fragments and options-bearing headers accepted
/// only if not fragments) or IPv6 (UDP directly after the fixed header),
/// UDP to port 6081 (checksum verified when `verify_udp_checksum`; a zero
/// checksum over IPv4 is accepted, over IPv6 rejected), GENEVE version 0 with
/// its options walked. Errors: [`Error::NotOverlay`] for other traffic,
/// [`Error::UnknownCritical`] for an option we must not ignore, otherwise the
/// parsers' errors.
pub fn decap(frame: &[u8], verify_udp_checksum: bool) -> Result<Decapped> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let ip_off = eth.header_len();
    let ip_bytes = eth.payload();
    let (outer_src, outer_dst, outer_tos, outer_ttl, udp_off, l4): (
        IpAddr,
        IpAddr,
        u8,
        u8,
        usize,
        &[u8],
    ) = match eth.ethertype() {
        ethertype::IPV4 => {
            let ip = ipv4::Packet::new_checked(ip_bytes)?;
            if !ip.verify_checksum() {
                return Err(Error::BadChecksum);
            }
            if ip.protocol() != protocol::UDP {
                return Err(Error::NotOverlay);
            }
            if ip.is_fragment() {
                return Err(Error::Unsupported);
            }
            (
                ip.src().into(),
                ip.dst().into(),
                ip.tos(),
                ip.ttl(),
                ip_off + ip.header_len(),
                &ip_bytes[ip.header_len()..ip.total_len()],
            )
        }
        ethertype::IPV6 => {
            let ip = ipv6::Packet::new_checked(ip_bytes)?;
            if ip.next_header() != protocol::UDP {
                return Err(Error::NotOverlay);
            }
            (
                ip.src().into(),
                ip.dst().into(),
                ip.traffic_class(),
                ip.hop_limit(),
                ip_off + ipv6::HEADER_LEN,
                &ip_bytes[ipv6::HEADER_LEN..ip.total_len()],
            )
        }
        _ => return Err(Error::NotOverlay),
    };
    let u = udp::Packet::new_checked(l4)?;
    if u.dst_port() != geneve::UDP_PORT {
        return Err(Error::NotOverlay);
    }
    if verify_udp_checksum {
        let ok = match (outer_src, outer_dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => u.verify_checksum_v4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => u.verify_checksum_v6(s, d),
            _ => false,
        };
        if !ok {
            return Err(Error::BadChecksum);
        }
    }
    let g = geneve::Header::new_checked(u.payload())?;
    let opts = geneve::parse_options(g.options())?;
    let geneve_off = udp_off + udp::HEADER_LEN;
    let inner_start = geneve_off + g.header_len();
    let mut inner_end = geneve_off + u.payload().len();
    let mut tag = inner_end..inner_end;
    if opts.security.is_some() {
        if inner_end - inner_start < AEAD_TAG_LEN {
            return Err(Error::Truncated);
        }
        inner_end -= AEAD_TAG_LEN;
        tag = inner_end..inner_end + AEAD_TAG_LEN;
    }
    Ok(Decapped {
        inner: inner_start..inner_end,
        tag,
        meta: OverlayMeta {
            src_mac: eth.src(),
            dst_mac: eth.dst(),
            vlan: eth.vlan(),
            outer_src,
            outer_dst,
            outer_tos,
            outer_ttl,
            src_port: u.src_port(),
            vni: g.vni(),
            oam: g.oam(),
            protocol: g.protocol(),
            flow: opts.flow,
            security: opts.security,
            geneve_off,
        },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    pub(crate) fn cfg_v4() -> TemplateConfig {
        let mut c = TemplateConfig::new(
            MacAddr([0x02, 0, 0, 0, 0, 1]),
            MacAddr([0x02, 0, 0, 0, 0, 2]),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
        );
        c.vni = 0xABCDEF;
        c
    }
    pub(crate) fn cfg_v6() -> TemplateConfig {
        let mut c = cfg_v4();
        c.src_ip = IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap());
        c.dst_ip = IpAddr::V6("2001:db8::2".parse::<Ipv6Addr>().unwrap());
        c
    }
    pub(crate) fn params() -> EncapParams {
        EncapParams {
            flow: FlowOption {
                flow_id: 42,
                seq: 0x1_0000_0005,
                timestamp_ns: 123_456_789,
            },
            entropy: 0xDEAD_BEEF,
            oam: false,
            security: SecurityOption::default(),
        }
    }
    /// A buffer with `headroom` bytes then a fake inner Ethernet frame of `len`.
    pub(crate) fn frame(headroom: usize, len: usize, tail: usize) -> Vec<u8> {
        let mut b = vec![0u8; headroom + len + tail];
        for (i, x) in b[headroom..headroom + len].iter_mut().enumerate() {
            *x = u8::try_from(i % 253).unwrap();
        }
        b
    }

    #[test]
    fn overheads() {
        assert_eq!(OVERHEAD_V4, 74);
        assert_eq!(OVERHEAD_V6, 94);
        let t4 = OverlayTemplate::new(&cfg_v4()).unwrap();
        let t6 = OverlayTemplate::new(&cfg_v6()).unwrap();
        assert_eq!(t4.header_len(), OVERHEAD_V4);
        assert_eq!(t6.header_len(), OVERHEAD_V6);
        assert_eq!(t4.max_inner_len(1500), 1440);
        assert_eq!(t6.max_inner_len(1500), 1420);
        let mut c = cfg_v6();
        c.secure = true;
        c.vlan = Some(VlanTag {
            pcp: 0,
            dei: false,
            vid: 7,
        });
        let t = OverlayTemplate::new(&c).unwrap();
        assert_eq!(t.overhead(), OVERHEAD_V6 + 4 + SECURITY_OVERHEAD);
        assert_eq!(t.max_inner_len(1500), 1500 - 40 - 8 - 8 - 24 - 32);
    }

    #[test]
    fn source_port_range() {
        for h in [0u32, 1, 0xFFFF_FFFF, 0x1234_5678, 0x8000_0000] {
            assert!(source_port(h) >= 49152);
        }
        assert_ne!(source_port(1), source_port(2));
    }

    #[test]
    fn v4_encap_bytes_and_decap() {
        let t = OverlayTemplate::new(&cfg_v4()).unwrap();
        let mut b = frame(128, 100, 0);
        let r = t.encap(&mut b, 128, 100, &params()).unwrap();
        assert_eq!(r, 128 - 74..228);
        let o = &b[r.clone()];
        // Ethernet
        assert_eq!(&o[..14], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        // IPv4: 45 00, total 160 (0x00a0), id 0x0005, DF, TTL 64, UDP
        assert_eq!(
            &o[14..24],
            &[0x45, 0, 0x00, 0xa0, 0x00, 0x05, 0x40, 0x00, 64, 17]
        );
        assert_eq!(&o[26..34], &[198, 18, 0, 1, 198, 19, 0, 1]);
        assert!(
            ipv4::Packet::new_checked(&o[14..])
                .unwrap()
                .verify_checksum()
        );
        // UDP: dst 6081, len 140, checksum 0
        assert_eq!(&o[36..42], &[0x17, 0xc1, 0x00, 0x8c, 0, 0]);
        assert_eq!(u16::from_be_bytes([o[34], o[35]]), source_port(0xDEAD_BEEF));
        // GENEVE: 6 words of options, protocol 6558, VNI abcdef
        assert_eq!(
            &o[42..50],
            &[0x06, 0x00, 0x65, 0x58, 0xab, 0xcd, 0xef, 0x00]
        );
        assert_eq!(&o[50..54], &[0xff, 0xf0, 0x01, 0x05]);
        let d = decap(o, true).unwrap();
        assert_eq!(d.inner, 74..174);
        assert_eq!(&o[d.inner.clone()], &frame(0, 100, 0)[..]);
        assert!(d.tag.is_empty());
        assert_eq!(d.meta.flow, Some(params().flow));
        assert_eq!(d.meta.vni, 0xABCDEF);
        assert_eq!(d.meta.protocol, ethertype::TEB);
        assert_eq!(d.meta.outer_src, cfg_v4().src_ip);
        assert_eq!(d.meta.outer_ttl, 64);
        assert!(!d.meta.oam);
    }

    #[test]
    fn v6_encap_has_udp_checksum_and_flow_label() {
        let t = OverlayTemplate::new(&cfg_v6()).unwrap();
        let mut b = frame(128, 1400, 0);
        let r = t.encap(&mut b, 128, 1400, &params()).unwrap();
        let o = &b[r];
        let ip = ipv6::Packet::new_checked(&o[14..]).unwrap();
        assert_eq!(ip.payload_len(), 1400 + 8 + 8 + 24);
        assert_eq!(ip.flow_label(), 0xDEAD_BEEF & 0xFFFFF);
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_ne!(u.checksum(), 0);
        assert!(decap(o, true).is_ok());
        // Corrupt one inner byte: the UDP checksum catches it.
        let mut bad = o.to_vec();
        bad[200] ^= 0x40;
        assert_eq!(decap(&bad, true).unwrap_err(), Error::BadChecksum);
        assert!(decap(&bad, false).is_ok());
    }

    #[test]
    fn v4_udp_checksum_option() {
        let mut c = cfg_v4();
        c.udp_checksum_v4 = true;
        let t = OverlayTemplate::new(&c).unwrap();
        let mut b = frame(80, 333, 0);
        let r = t.encap(&mut b, 80, 333, &params()).unwrap();
        let o = &b[r];
        assert_ne!(&o[40..42], &[0, 0]);
        let mut bad = o.to_vec();
        bad[300] ^= 1;
        assert_eq!(decap(&bad, true).unwrap_err(), Error::BadChecksum);
        assert!(decap(o, true).is_ok());
    }

    #[test]
    fn secure_layout() {
        let mut c = cfg_v4();
        c.secure = true;
        let t = OverlayTemplate::new(&c).unwrap();
        let mut b = frame(128, 64, 16);
        b[128 + 64..].fill(0xAA);
        let mut p = params();
        p.security = SecurityOption {
            receiver_index: 9,
            counter: 77,
        };
        let r = t.encap(&mut b, 128, 64, &p).unwrap();
        assert_eq!(r.len(), 74 + 16 + 64 + 16);
        let o = &b[r];
        let d = decap(o, true).unwrap();
        assert_eq!(d.meta.security, Some(p.security));
        assert_eq!(d.inner, 90..154);
        assert_eq!(d.tag, 154..170);
        assert!(o[d.tag.clone()].iter().all(|&x| x == 0));
        assert_eq!(o[d.meta.geneve_off + 1] & 0x40, 0x40, "C bit");
        assert_eq!(d.inner.start - d.meta.geneve_off, 8 + 24 + 16);
        // No tailroom: refused.
        let mut b = frame(128, 64, 15);
        assert_eq!(t.encap(&mut b, 128, 64, &p), Err(Error::NoRoom));
    }

    #[test]
    fn oam_packets() {
        let t = OverlayTemplate::new(&cfg_v4()).unwrap();
        let mut b = vec![0u8; 128 + 36];
        let probe = oam::Probe {
            path_id: 3,
            probe_seq: 4,
            send_ts_ns: 5,
            echo_ts_ns: 0,
            nonce: 6,
        };
        let n = oam::Repr::Probe(probe).emit(&mut b[128..]).unwrap();
        let mut p = params();
        p.oam = true;
        let r = t.encap(&mut b, 128, n, &p).unwrap();
        let d = decap(&b[r.clone()], true).unwrap();
        assert!(d.meta.oam);
        assert_eq!(d.meta.protocol, oam::OAM_PROTOCOL);
        let inner = &b[r][d.inner];
        let m = oam::Message::new_checked(inner).unwrap();
        assert_eq!(m.probe(), Some(probe));
    }

    /// The GENEVE protocol type: unsealed data 0x6558, sealed data 0x88B6
    /// (ciphertext is not an Ethernet frame), OAM 0x88B5 either way; set
    /// by `encap_to_seal`, before the AEAD covers the header.
    #[test]
    fn protocol_types() {
        assert_eq!(SEALED_PROTOCOL, 0x88B6);
        for secure in [false, true] {
            let mut c = cfg_v4();
            c.secure = secure;
            let t = OverlayTemplate::new(&c).unwrap();
            for oam in [false, true] {
                let mut p = params();
                p.oam = oam;
                let mut b = frame(128, 64, 16);
                let r = t.encap_to_seal(&mut b, 128, 64, &p).unwrap();
                let d = decap(&b[r.clone()], false).unwrap();
                let want = match (oam, secure) {
                    (true, _) => 0x88B5,
                    (false, true) => 0x88B6,
                    (false, false) => 0x6558,
                };
                assert_eq!(d.meta.protocol, want, "secure {secure} oam {oam}");
                let g = r.start + t.geneve_offset();
                assert_eq!(b[g + 2..g + 4], want.to_be_bytes());
                assert_eq!(d.meta.security.is_some(), secure);
            }
        }
    }

    #[test]
    fn encap_errors() {
        let t = OverlayTemplate::new(&cfg_v4()).unwrap();
        let mut b = frame(73, 10, 0);
        assert_eq!(t.encap(&mut b, 73, 10, &params()), Err(Error::NoRoom));
        assert_eq!(t.encap(&mut b, 74, 10, &params()), Err(Error::NoRoom));
        let mut big = vec![0u8; 128 + 65536];
        assert_eq!(
            t.encap(&mut big, 128, 65536 - 20, &params()),
            Err(Error::TooBig)
        );
        let mut c = cfg_v4();
        c.dst_ip = cfg_v6().dst_ip;
        assert_eq!(OverlayTemplate::new(&c).unwrap_err(), Error::Malformed);
        let mut c = cfg_v4();
        c.vni = 1 << 24;
        assert_eq!(OverlayTemplate::new(&c).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn decap_rejections() {
        let t = OverlayTemplate::new(&cfg_v4()).unwrap();
        let mut b = frame(128, 60, 0);
        let r = t.encap(&mut b, 128, 60, &params()).unwrap();
        let o = b[r].to_vec();
        // Wrong port.
        let mut x = o.clone();
        x[37] ^= 1;
        assert_eq!(decap(&x, false).unwrap_err(), Error::NotOverlay);
        // IP header checksum.
        let mut x = o.clone();
        x[22] ^= 1;
        assert_eq!(decap(&x, false).unwrap_err(), Error::BadChecksum);
        // Not IP.
        let mut x = o.clone();
        x[12] = 0x08;
        x[13] = 0x06;
        assert_eq!(decap(&x, false).unwrap_err(), Error::NotOverlay);
        // Unknown critical option: flip our flow option's type to critical.
        let mut x = o.clone();
        x[52] = 0x81;
        assert_eq!(decap(&x, false).unwrap_err(), Error::UnknownCritical);
        // Truncated frame.
        assert_eq!(
            decap(&o[..o.len() - 1], false).unwrap_err(),
            Error::Truncated
        );
        // Ethernet padding after the IP packet is ignored.
        let mut x = o.clone();
        x.extend_from_slice(&[0; 10]);
        assert_eq!(decap(&x, true).unwrap().inner, 74..134);
    }

    fn arb_cfg() -> impl Strategy<Value = TemplateConfig> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0u16..4096),
            any::<u32>(),
            any::<u128>(),
            any::<u128>(),
            0u32..=geneve::MAX_VNI,
            any::<u8>(),
        )
            .prop_map(|(v6, secure, csum4, vid, a4, s6, d6, vni, tos)| {
                let mut c = cfg_v4();
                if v6 {
                    c.src_ip = IpAddr::V6(Ipv6Addr::from(s6));
                    c.dst_ip = IpAddr::V6(Ipv6Addr::from(d6));
                } else {
                    c.src_ip = IpAddr::V4(Ipv4Addr::from(a4));
                }
                c.secure = secure;
                c.udp_checksum_v4 = csum4;
                c.vlan = vid.map(|vid| VlanTag {
                    pcp: 3,
                    dei: false,
                    vid,
                });
                c.vni = vni;
                c.tos = tos;
                c
            })
    }

    fn arb_params() -> impl Strategy<Value = EncapParams> {
        (
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<bool>(),
            any::<u32>(),
            any::<u64>(),
        )
            .prop_map(
                |(flow_id, seq, ts, entropy, oam, receiver_index, counter)| EncapParams {
                    flow: FlowOption {
                        flow_id,
                        seq,
                        timestamp_ns: ts,
                    },
                    entropy,
                    oam,
                    security: SecurityOption {
                        receiver_index,
                        counter,
                    },
                },
            )
    }

    proptest! {
        #[test]
        fn encap_decap_roundtrip(cfg in arb_cfg(), p in arb_params(), inner in proptest::collection::vec(any::<u8>(), 0..1600), extra_head in 0usize..16) {
            let t = OverlayTemplate::new(&cfg).unwrap();
            let head = t.header_len() + extra_head;
            let mut b = vec![0u8; head + inner.len() + 16];
            b[head..head + inner.len()].copy_from_slice(&inner);
            let r = t.encap(&mut b, head, inner.len(), &p).unwrap();
            prop_assert_eq!(r.start, extra_head);
            prop_assert_eq!(r.len(), t.overhead() + inner.len());
            let d = decap(&b[r.clone()], true).unwrap();
            prop_assert_eq!(&b[r.clone()][d.inner.clone()], &inner[..]);
            prop_assert_eq!(d.meta.flow, Some(p.flow));
            prop_assert_eq!(d.meta.security, cfg.secure.then_some(p.security));
            prop_assert_eq!(d.meta.oam, p.oam);
            prop_assert_eq!(d.meta.vni, cfg.vni);
            prop_assert_eq!(d.meta.vlan, cfg.vlan);
            prop_assert_eq!(d.meta.outer_src, cfg.src_ip);
            prop_assert_eq!(d.meta.outer_dst, cfg.dst_ip);
            prop_assert_eq!(d.meta.outer_tos, cfg.tos);
            prop_assert_eq!(d.meta.src_port, source_port(p.entropy));
            prop_assert_eq!(peek_flow_id(&b[r.clone()]), Some(p.flow.flow_id));
            let protocol = match (p.oam, cfg.secure) {
                (true, _) => oam::OAM_PROTOCOL,
                (false, true) => SEALED_PROTOCOL,
                (false, false) => cfg.inner_protocol,
            };
            prop_assert_eq!(d.meta.protocol, protocol);
        }

        /// The prefetch hint reads within the frame whatever its bytes, and
        /// names a flow only where `decap` finds the same one first.
        #[test]
        fn peek_flow_id_never_panics_and_agrees_with_decap(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let peeked = peek_flow_id(&b);
            if let Ok(d) = decap(&b, false)
                && let Some(id) = peeked
            {
                prop_assert_eq!(d.meta.flow.map(|f| f.flow_id), Some(id));
            }
        }
    }
}
