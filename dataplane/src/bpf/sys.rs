//! Thin `bpf(2)` wrappers: map create/update, program load, link create,
//! test run. Attributes are written into a zeroed `bpf_attr`-sized buffer at
//! the kernel ABI's offsets.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::asm::Insn;
use super::program::{XdpFilter, xdp_redirect_program};

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_MAP_DELETE_ELEM: i32 = 3;
const BPF_PROG_LOAD: i32 = 5;
const BPF_PROG_TEST_RUN: i32 = 10;
const BPF_LINK_CREATE: i32 = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver (veth, and NICs with native XDP).
    Native,
    /// Generic (skb) mode: any interface, slower.
    Generic,
    /// Native if the driver supports it, generic otherwise.
    Auto,
}

impl std::str::FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "native" | "drv" => Ok(Self::Native),
            "generic" | "skb" => Ok(Self::Generic),
            "auto" => Ok(Self::Auto),
            _ => Err(format!(
                "unknown XDP mode {s:?}: use native, generic or auto"
            )),
        }
    }
}

/// A failed BPF operation, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// No such interface.
    #[error("{0}: no such interface (see `ip link`)")]
    NoInterface(String),
    /// Missing privileges: `needs` names the capabilities the operation
    /// takes (what a service without root must be given, docs/deploy.md).
    #[error(
        "{op}: permission denied: needs {needs} (run as root, or give the service these capabilities: docs/deploy.md)"
    )]
    Permission {
        /// What was attempted.
        op: &'static str,
        /// The capabilities it takes.
        needs: &'static str,
    },
    /// The driver cannot run XDP natively.
    #[error("{ifname}: native XDP not supported by this driver: use --xdp-mode generic (or auto)")]
    NativeUnsupported {
        /// Interface.
        ifname: String,
    },
    /// Something else holds the interface's XDP hook.
    #[error(
        "{ifname}: another XDP program is attached: remove it with `ip link set dev {ifname} xdp off`"
    )]
    Busy {
        /// Interface.
        ifname: String,
    },
    /// The verifier refused the program (a bug: the log says why).
    #[error("XDP program rejected by the verifier: {log}")]
    Verifier {
        /// Verifier log.
        log: String,
    },
    /// The program could not be generated.
    #[error(transparent)]
    Program(#[from] super::program::ProgramError),
    /// Any other OS error.
    #[error("{op}: {err}")]
    Os {
        /// What was attempted.
        op: &'static str,
        /// OS error.
        err: std::io::Error,
    },
}

fn sys_bpf(cmd: i32, attr: &mut [u8; 128]) -> Result<i64, std::io::Error> {
    // SAFETY: `attr` is a 128-byte buffer, large enough for every command used
    // here (the kernel reads at most `size` bytes and zero-checks the rest).
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put32(a: &mut [u8; 128], off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(a: &mut [u8; 128], off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// What `bpf(2)` needs for our maps and programs: CAP_BPF for any of it
/// (unprivileged BPF is off on most systems), CAP_NET_ADMIN for an XSKMAP
/// and an XDP program.
const BPF_NEEDS: &str = "CAP_BPF and CAP_NET_ADMIN";

fn os(op: &'static str, err: std::io::Error) -> BpfError {
    if err.raw_os_error() == Some(libc::EPERM) {
        BpfError::Permission {
            op,
            needs: BPF_NEEDS,
        }
    } else {
        BpfError::Os { op, err }
    }
}

fn owned(fd: i64, op: &'static str) -> Result<OwnedFd, BpfError> {
    let fd = RawFd::try_from(fd).map_err(|_| BpfError::Os {
        op,
        err: std::io::Error::other("fd out of range"),
    })?;
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates an XSKMAP with `entries` slots (one per queue).
pub fn create_xskmap(entries: u32) -> Result<OwnedFd, BpfError> {
    let mut a = [0u8; 128];
    put32(&mut a, 0, BPF_MAP_TYPE_XSKMAP);
    put32(&mut a, 4, 4);
    put32(&mut a, 8, 4);
    put32(&mut a, 12, entries.max(1));
    a[28..28 + 7].copy_from_slice(b"mg_xsks");
    let fd = sys_bpf(BPF_MAP_CREATE, &mut a).map_err(|e| os("bpf map create", e))?;
    owned(fd, "bpf map create")
}

fn map_update_u32(map: RawFd, key: u32, value: u32) -> Result<(), BpfError> {
    let mut a = [0u8; 128];
    put32(&mut a, 0, u32::try_from(map).unwrap_or(u32::MAX));
    put64(&mut a, 8, &key as *const u32 as u64);
    put64(&mut a, 16, &value as *const u32 as u64);
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map_err(|e| os("bpf map update", e))?;
    Ok(())
}

fn map_delete_u32(map: RawFd, key: u32) -> Result<(), BpfError> {
    let mut a = [0u8; 128];
    put32(&mut a, 0, u32::try_from(map).unwrap_or(u32::MAX));
    put64(&mut a, 8, &key as *const u32 as u64);
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut a).map_err(|e| os("bpf map delete", e))?;
    Ok(())
}

/// Loads an XDP program; on a verifier refusal returns its log.
pub fn load_xdp(insns: &[Insn]) -> Result<OwnedFd, BpfError> {
    let license = CString::new("GPL").unwrap_or_default();
    let mut log = vec![0u8; 64 * 1024];
    let mut a = [0u8; 128];
    put32(&mut a, 0, BPF_PROG_TYPE_XDP);
    put32(&mut a, 4, u32::try_from(insns.len()).unwrap_or(u32::MAX));
    put64(&mut a, 8, insns.as_ptr() as u64);
    put64(&mut a, 16, license.as_ptr() as u64);
    put32(&mut a, 24, 1);
    put32(&mut a, 28, u32::try_from(log.len()).unwrap_or(0));
    put64(&mut a, 32, log.as_mut_ptr() as u64);
    a[48..48 + 9].copy_from_slice(b"mg_xdp_rx");
    put32(&mut a, 68, BPF_XDP);
    match sys_bpf(BPF_PROG_LOAD, &mut a) {
        Ok(fd) => owned(fd, "bpf prog load"),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).into_owned();
            // The program adds the IP header's length to a packet pointer;
            // the verifier allows arithmetic on pointers with a variable
            // offset only to CAP_PERFMON (bpf_allow_ptr_leaks) and says
            // "... prohibited for !root" otherwise.
            if text.contains("prohibited for !root") {
                return Err(BpfError::Permission {
                    op: "bpf prog load (verifier)",
                    needs: "CAP_PERFMON",
                });
            }
            if text.is_empty() {
                Err(os("bpf prog load", e))
            } else {
                Err(BpfError::Verifier { log: text })
            }
        }
        Err(e) => Err(os("bpf prog load", e)),
    }
}

/// Runs program `prog` once on `data` with `BPF_PROG_TEST_RUN`; returns its verdict.
pub fn test_run(prog: &OwnedFd, data: &[u8]) -> Result<u32, BpfError> {
    let mut out = vec![0u8; data.len() + 512];
    let mut a = [0u8; 128];
    put32(
        &mut a,
        0,
        u32::try_from(prog.as_raw_fd()).unwrap_or(u32::MAX),
    );
    put32(&mut a, 8, u32::try_from(data.len()).unwrap_or(u32::MAX));
    put32(&mut a, 12, u32::try_from(out.len()).unwrap_or(0));
    put64(&mut a, 16, data.as_ptr() as u64);
    put64(&mut a, 24, out.as_mut_ptr() as u64);
    put32(&mut a, 32, 1);
    sys_bpf(BPF_PROG_TEST_RUN, &mut a).map_err(|e| os("bpf prog test run", e))?;
    let mut r = [0u8; 4];
    r.copy_from_slice(&a[4..8]);
    Ok(u32::from_ne_bytes(r))
}

/// Interface index of `ifname`.
pub fn ifindex(ifname: &str) -> Result<u32, BpfError> {
    let c = CString::new(ifname).map_err(|_| BpfError::NoInterface(ifname.to_string()))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(BpfError::NoInterface(ifname.to_string()))
    } else {
        Ok(idx)
    }
}

fn link_create(prog: &OwnedFd, ifindex: u32, flags: u32) -> Result<OwnedFd, std::io::Error> {
    let mut a = [0u8; 128];
    put32(
        &mut a,
        0,
        u32::try_from(prog.as_raw_fd()).unwrap_or(u32::MAX),
    );
    put32(&mut a, 4, ifindex);
    put32(&mut a, 8, BPF_XDP);
    put32(&mut a, 12, flags);
    let fd = sys_bpf(BPF_LINK_CREATE, &mut a)?;
    owned(fd, "bpf link create").map_err(|_| std::io::Error::other("bad fd"))
}

/// The gateway's XDP program attached to one interface through a `bpf_link`,
/// with its XSKMAP. Dropping it (or the process exiting) detaches the program.
pub struct XdpAttachment {
    ifname: String,
    ifindex: u32,
    mode: XdpMode,
    map: OwnedFd,
    _prog: OwnedFd,
    _link: OwnedFd,
}

impl std::fmt::Debug for XdpAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "XdpAttachment({} ifindex {} {:?})",
            self.ifname, self.ifindex, self.mode
        )
    }
}

impl XdpAttachment {
    /// Creates the XSKMAP (`queues` entries), generates and loads the program
    /// for `filter`, and attaches it to `ifname` in `mode`.
    pub fn attach(
        ifname: &str,
        filter: &XdpFilter,
        queues: u32,
        mode: XdpMode,
    ) -> Result<Self, BpfError> {
        let ifindex = ifindex(ifname)?;
        let map = create_xskmap(queues)?;
        let insns = xdp_redirect_program(filter, map.as_raw_fd())?;
        let prog = load_xdp(&insns)?;
        let try_mode = |m: XdpMode| {
            let flags = if m == XdpMode::Native {
                XDP_FLAGS_DRV_MODE
            } else {
                XDP_FLAGS_SKB_MODE
            };
            link_create(&prog, ifindex, flags)
        };
        let (link, mode) = match mode {
            XdpMode::Auto => match try_mode(XdpMode::Native) {
                Ok(l) => (l, XdpMode::Native),
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        || e.raw_os_error() == Some(libc::EPERM) =>
                {
                    return Err(map_attach_err(ifname, e));
                }
                Err(_) => (
                    try_mode(XdpMode::Generic).map_err(|e| map_attach_err(ifname, e))?,
                    XdpMode::Generic,
                ),
            },
            m => (try_mode(m).map_err(|e| map_attach_err(ifname, e))?, m),
        };
        Ok(Self {
            ifname: ifname.to_string(),
            ifindex,
            mode,
            map,
            _prog: prog,
            _link: link,
        })
    }

    /// Points queue `queue`'s entry at the AF_XDP socket `xsk_fd`.
    pub fn register(&self, queue: u32, xsk_fd: RawFd) -> Result<(), BpfError> {
        map_update_u32(
            self.map.as_raw_fd(),
            queue,
            u32::try_from(xsk_fd).unwrap_or(u32::MAX),
        )
    }
    /// Removes queue `queue`'s socket (its traffic goes to the kernel).
    pub fn unregister(&self, queue: u32) -> Result<(), BpfError> {
        map_delete_u32(self.map.as_raw_fd(), queue)
    }
    /// The mode actually in use.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }
    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

fn map_attach_err(ifname: &str, e: std::io::Error) -> BpfError {
    match e.raw_os_error() {
        Some(libc::EBUSY) | Some(libc::EEXIST) => BpfError::Busy {
            ifname: ifname.to_string(),
        },
        Some(libc::EOPNOTSUPP) => BpfError::NativeUnsupported {
            ifname: ifname.to_string(),
        },
        Some(libc::EPERM) => BpfError::Permission {
            op: "attach XDP",
            needs: "CAP_NET_ADMIN",
        },
        _ => BpfError::Os {
            op: "attach XDP (bpf link create)",
            err: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn frame_v4(proto: u8, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 18];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = proto;
        f[30..34].copy_from_slice(&dst);
        f[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&dport.to_be_bytes());
        f
    }
    fn frame_v6(nh: u8, dst: [u8; 16], b54: u8, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 40 + 8 + 10];
        f[12] = 0x86;
        f[13] = 0xdd;
        f[14] = 0x60;
        f[20] = nh;
        f[38..54].copy_from_slice(&dst);
        f[54] = b54;
        f[56..58].copy_from_slice(&dport.to_be_bytes());
        f
    }

    /// The verifier accepts every shape of program, and the verdicts are
    /// those `XdpFilter` documents, run in the kernel on crafted frames.
    #[test]
    fn verdicts_in_kernel() {
        if !is_root() {
            println!("SKIP verdicts_in_kernel: needs root for bpf()");
            return;
        }
        let local4 = std::net::Ipv4Addr::new(198, 18, 0, 2);
        let local6: std::net::Ipv6Addr = "2001:2::2".parse().unwrap();
        let mut lan = XdpFilter::lan(&[local4], &[local6]);
        lan.udp_ports = vec![6081];
        lan.test_verdict = true;
        let mut wan = XdpFilter::wan(&[6081, 7000]);
        wan.test_verdict = true;
        let lan_p = load_xdp(&xdp_redirect_program(&lan, -1).unwrap()).unwrap();
        let wan_p = load_xdp(&xdp_redirect_program(&wan, -1).unwrap()).unwrap();
        const P: u32 = 2;
        const R: u32 = 3;
        let other4 = [198, 19, 0, 1];
        let other6 = "2001:2::99".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let cases: Vec<(&str, Vec<u8>, u32, u32)> = vec![
            (
                "arp",
                {
                    let mut f = vec![0u8; 60];
                    f[12] = 0x08;
                    f[13] = 0x06;
                    f
                },
                P,
                P,
            ),
            (
                "v4 runt",
                {
                    let mut f = vec![0u8; 20];
                    f[12] = 0x08;
                    f
                },
                P,
                P,
            ),
            (
                "v6 runt",
                {
                    let mut f = vec![0u8; 40];
                    f[12] = 0x86;
                    f[13] = 0xdd;
                    f
                },
                P,
                P,
            ),
            (
                "v4 truncated",
                frame_v4(17, other4, 6081)[..30].to_vec(),
                P,
                P,
            ),
            (
                "v4 udp geneve to local",
                frame_v4(17, local4.octets(), 6081),
                R,
                R,
            ),
            (
                "v4 udp other port to local",
                frame_v4(17, local4.octets(), 22),
                P,
                P,
            ),
            ("v4 tcp to local", frame_v4(6, local4.octets(), 22), P, P),
            ("v4 tcp transit", frame_v4(6, other4, 80), R, P),
            ("v4 udp 7000", frame_v4(17, other4, 7000), R, R),
            ("v6 nd", frame_v6(58, other6, 135, 0), P, P),
            ("v6 echo transit", frame_v6(58, other6, 128, 0), R, P),
            ("v6 to local", frame_v6(6, local6.octets(), 0, 22), P, P),
            (
                "v6 udp geneve",
                frame_v6(17, local6.octets(), 0, 6081),
                R,
                R,
            ),
            ("v6 tcp transit", frame_v6(6, other6, 0, 80), R, P),
            ("v4 multicast", frame_v4(2, [224, 0, 0, 22], 0), P, P),
            ("v4 broadcast", frame_v4(17, [255, 255, 255, 255], 67), P, P),
            (
                "v4 geneve to multicast",
                frame_v4(17, [239, 1, 1, 1], 6081),
                R,
                R,
            ),
            (
                "v6 mld",
                frame_v6(
                    58,
                    "ff02::16".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                    143,
                    0,
                ),
                P,
                P,
            ),
            (
                "v6 link-local",
                frame_v6(
                    6,
                    "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                    0,
                    22,
                ),
                P,
                P,
            ),
            (
                "v6 fec0 is not link-local",
                frame_v6(
                    6,
                    "fec0::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                    0,
                    22,
                ),
                R,
                P,
            ),
        ];
        for (name, f, want_lan, want_wan) in cases {
            assert_eq!(test_run(&lan_p, &f).unwrap(), want_lan, "lan: {name}");
            assert_eq!(test_run(&wan_p, &f).unwrap(), want_wan, "wan: {name}");
        }
    }

    #[test]
    fn bad_interface_name_is_a_clear_error() {
        let e = ifindex("no-such-if0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "no-such-if0: no such interface (see `ip link`)"
        );
    }
}
