//! The failover vocabulary of the dataplane and the control process: path
//! references, the special values of an assignment, path events, probe
//! outcomes and candidate path records. Plain values; the control channel
//! (`shm::msg`) carries them on its rings, this module owns them.

/// "No path": the path of a flow that sends nothing, and in an assignment
/// ([`Gateway::on_assign`](crate::overlay::Gateway::on_assign)) "the flow follows its peer's default path again".
pub const PATH_NONE: u32 = u32::MAX;
/// The flow of an assignment meaning "the peer's default path" (acks,
/// best-effort traffic and flows without an assignment of their own).
pub const FLOW_PEER_DEFAULT: u32 = u32::MAX;
/// The flow of an assignment meaning "the control holds this path down":
/// the dataplane's reflex (an ack gap elsewhere) will not fall back on it.
pub const FLOW_MARK_DOWN: u32 = u32::MAX - 1;
/// The flow of an assignment meaning "the control holds this path usable
/// again".
pub const FLOW_MARK_UP: u32 = u32::MAX - 2;

/// Path reference (on the control channel, and the path id a probe
/// carries): peer and candidate index, `peer << 16 | index`.
pub fn path_ref(peer: usize, index: usize) -> u32 {
    let p = u32::try_from(peer & 0xFFFF).unwrap_or(0);
    let i = u32::try_from(index & 0xFFFF).unwrap_or(0);
    p << 16 | i
}

/// The (peer, index) a path reference names (not checked against the table).
pub fn split_path_ref(r: u32) -> (usize, usize) {
    (
        usize::try_from(r >> 16).unwrap_or(usize::MAX),
        usize::try_from(r & 0xFFFF).unwrap_or(usize::MAX),
    )
}

/// What the dataplane saw happen to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathEventKind {
    /// Data went out on it and no ack came back for the ack-gap time: the
    /// dataplane moved its flows off it at once (the fastest signal).
    AckGap,
    /// It answered again after being down.
    Up,
}

/// The answer to one probe command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The command's id.
    pub id: u64,
    /// Path reference (`peer << 16 | index`).
    pub path: u32,
    /// Probes sent (0: the command was refused, see the stats).
    pub sent: u32,
    /// Echoes received.
    pub received: u32,
    /// Smallest round-trip time, ns (0: none).
    pub rtt_min_ns: u64,
    /// Mean round-trip time, ns (0: none).
    pub rtt_mean_ns: u64,
}

/// One candidate path of the dataplane (what a path reference means).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PathTelemetry {
    /// Path reference (`peer << 16 | index`).
    pub path: u32,
    /// Local uplink (`Config::uplinks` index).
    pub uplink: u16,
    /// Waypoint peer index, or `u16::MAX` for a direct path.
    pub via: u16,
    /// Index of the outer destination in the gateway list of the peer it
    /// is sent to (the waypoint's for a detour).
    pub remote: u16,
    /// The dataplane's own view: usable.
    pub up: bool,
    /// Whether traffic to the peer rides it by default now.
    pub active: bool,
    /// Smoothed probe round-trip time, microseconds (0: none yet; at most 2^24 - 1 on the
    /// control channel: 16.7 s).
    pub srtt_us: u32,
    /// Data from the peer arrived by this path (on its port, from its remote address) within
    /// the last 100 ms: its peer-to-us direction works, whatever our probes say (their echoes
    /// may wait, or be dropped, in the queue of that direction the peer's flows fill).
    pub rx_recent: bool,
}
