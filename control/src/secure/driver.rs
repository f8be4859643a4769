//! The security driver: the [`Endpoint`] connected to the dataplane's ring, quinn-proto style
//! (telemetry in with [`SecureDriver::on_telemetry`], commands out with
//! [`SecureDriver::poll`]); pure glue, time as an argument, no I/O (the loop in
//! [`crate::run::io`] moves the messages, beside the [`crate::failover::FailoverDriver`]).
//!
//! - **In**: [`Telemetry::Handshake`] (a handshake message the dataplane received, after its
//!   own rate limits) goes to the endpoint; an answer goes back to the uplink, address and UDP
//!   port it came from. [`Telemetry::Keys`] reports every installed key's packet count and
//!   confirmation (rekey on packet count; a responder key becomes current).
//!   [`Telemetry::Paths`] tells which direct paths lead to each peer.
//! - **Out**: [`Command::InstallKey`] and [`Command::RevokeKey`] (for every worker: see
//!   [`is_broadcast`]), before the [`Command::SendHandshake`] that completes their
//!   handshake. Initiations leave on the peer's active path (the failover driver's choice, else
//!   the dataplane's) and, on retries, on its other direct paths in turn.
//! - **Attach**: after every attach (a control or dataplane restart) every peer handshakes again
//!   at once. Keys the dataplane still holds keep carrying traffic meanwhile: the driver first
//!   waits for one report ([`Telemetry::Paths`], which a worker publishes together with its
//!   [`Telemetry::Keys`]; or [`INVENTORY_WAIT`]) so that its new keys go into slots those do not
//!   occupy. The loop polls only after draining the telemetry.
//! - `mode = "off"`: the driver does nothing.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;

use mongate_dataplane::config::{Config, SecurityMode};
use mongate_dataplane::overlay::failover::PathTelemetry;
use mongate_dataplane::shm::Command;
use mongate_dataplane::shm::Telemetry;
use mongate_dataplane::shm::msg::{HANDSHAKE_MAX, HandshakeIn, HandshakeOut, KeyInstall};
use mongate_dataplane::sys::{MS, Nanos};

use super::cookie::Source;
use super::endpoint::{Endpoint, EndpointConfig, EndpointError, EndpointStats};
use super::handshake::{Entropy, Event, OsEntropy, Output, SessionKeys, Timers};
use super::keys::{KeyError, PublicKey, StaticSecret, load};
use super::messages::{MessageBuf, MessageType};

/// Longest wait after an attach for the dataplane's first key report before handshaking.
pub const INVENTORY_WAIT: Nanos = 300 * MS;
/// After an attach, how long a path whose next gateway has no session yet is kept from the
/// failover driver ([`SecureDriver::path_sealable`]): two handshake retries' time; after it the
/// path is a candidate like any other, and its refused probes count as failures.
pub const PATH_KEY_GRACE: Nanos = 2 * super::handshake::REKEY_TIMEOUT;
/// Log lines kept for the loop at most (the oldest are dropped).
const MAX_EVENTS: usize = 256;

/// Why the driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    /// `[security]` requires keys but names no private key file.
    #[error("[security] has no private_key_file")]
    NoKeyFile,
    /// The private key file is unsafe or unreadable.
    #[error("private key: {0}")]
    Key(#[from] KeyError),
    /// A peer without a public key.
    #[error("peer {0}: no public_key")]
    NoPublicKey(String),
    /// The peers do not fit the key slots or repeat a key.
    #[error("{0}")]
    Peers(#[from] EndpointError),
    /// The OS random generator does not work.
    #[error("random generator: {0}")]
    Random(std::io::Error),
}

/// What the driver could not use or send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecureStats {
    /// Handshake telemetry whose type byte disagrees with its bytes, or too long.
    pub bad_telemetry: u64,
    /// Messages with nowhere to go (no path on that uplink, or to that peer).
    pub no_path: u64,
    /// Handshake messages sent.
    pub sent: u64,
    /// Keys installed.
    pub installed: u64,
    /// Keys revoked.
    pub revoked: u64,
    /// Key reports naming an unknown peer.
    pub bad_key_reports: u64,
}

/// A log line for the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecureEvent {
    /// Peer index.
    pub peer: u32,
    /// What happened.
    pub event: Event,
}

/// The control's security driver for one site.
pub struct SecureDriver<E: Entropy = OsEntropy> {
    ep: Option<Endpoint<E>>,
    npeers: usize,
    nuplinks: usize,
    /// Direct path references per peer (from `Telemetry::Paths`), in reference order.
    direct: Vec<Vec<u32>>,
    /// Uplink of each known path.
    uplink_of: BTreeMap<u32, u16>,
    /// The next gateway (peer index) of each known path: its waypoint, else its peer.
    next_of: BTreeMap<u32, u32>,
    /// Per peer: the active path as the failover driver wants it, and as the dataplane reports.
    wanted: Vec<Option<u32>>,
    dp_active: Vec<Option<u32>>,
    /// Initiations sent to each peer since its last handshake (picks the path of a retry).
    tries: Vec<usize>,
    /// Each peer sealable at the last [`Self::newly_sealable`].
    sealable: Vec<bool>,
    /// After an attach: no initiation before this time unless a key report came.
    hold_until: Option<Nanos>,
    /// The last attach (or the start).
    attached_at: Nanos,
    cmds: VecDeque<Command>,
    events: VecDeque<SecureEvent>,
    stats: SecureStats,
}

impl<E: Entropy> core::fmt::Debug for SecureDriver<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecureDriver")
            .field("on", &self.ep.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The peer a path's packets are sealed for: its waypoint, else its peer.
fn next_gateway(p: &PathTelemetry) -> u32 {
    if p.via == u16::MAX {
        p.path >> 16
    } else {
        u32::from(p.via)
    }
}

/// Wall clock, ns since the Unix epoch (for handshake timestamps).
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The endpoint settings of a site's `[security]`.
pub fn endpoint_config(config: &Config) -> EndpointConfig {
    EndpointConfig {
        timers: Timers {
            rekey_after: config.security.rekey_after_ns,
            rekey_after_packets: config.security.rekey_after_packets,
        },
        ..EndpointConfig::default()
    }
}

/// Every peer's (index, public key); an error names a peer without one.
pub fn peer_keys(config: &Config) -> Result<Vec<(u32, PublicKey)>, SecureError> {
    config
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let k = p
                .public_key
                .ok_or_else(|| SecureError::NoPublicKey(p.name.clone()))?;
            Ok((u32::try_from(i).unwrap_or(u32::MAX), PublicKey(k)))
        })
        .collect()
}

/// The private key file `[security]` names (`None` with `mode = "off"`).
pub fn key_file(config: &Config) -> Result<Option<PathBuf>, SecureError> {
    match config.security.mode {
        SecurityMode::Off => Ok(None),
        SecurityMode::Required => config
            .security
            .private_key_file
            .clone()
            .map(Some)
            .ok_or(SecureError::NoKeyFile),
    }
}

impl SecureDriver<OsEntropy> {
    /// The driver of the site `config` describes: loads its private key (refused if others may
    /// read it); with `mode = "off"`, a driver that does nothing.
    pub fn from_config(config: &Config, now: Nanos) -> Result<Self, SecureError> {
        let Some(path) = key_file(config)? else {
            return Ok(Self::off(config));
        };
        let secret = load(&path)?;
        let rng = OsEntropy::new().map_err(SecureError::Random)?;
        Self::new(
            config,
            secret,
            endpoint_config(config),
            wall_clock_ns(),
            now,
            rng,
        )
    }
}

impl<E: Entropy> SecureDriver<E> {
    /// A driver that does nothing (`mode = "off"`).
    pub fn off(config: &Config) -> Self {
        Self::with_endpoint(config, None)
    }

    /// A driver with this key, settings, wall clock and random source.
    pub fn new(
        config: &Config,
        secret: StaticSecret,
        cfg: EndpointConfig,
        wall_unix_ns: u64,
        now: Nanos,
        rng: E,
    ) -> Result<Self, SecureError> {
        let peers = peer_keys(config)?;
        let mut ep = Endpoint::new(secret, &peers, cfg, wall_unix_ns, now, rng)?;
        // No peer is handshaken with before a direct path to it is known.
        for (n, _) in &peers {
            ep.set_ready(*n, false);
        }
        let mut d = Self::with_endpoint(config, Some(ep));
        d.hold_until = Some(now.saturating_add(INVENTORY_WAIT));
        d.attached_at = now;
        Ok(d)
    }

    fn with_endpoint(config: &Config, ep: Option<Endpoint<E>>) -> Self {
        let n = config.peers.len();
        Self {
            ep,
            npeers: n,
            nuplinks: config.uplinks.len(),
            direct: vec![Vec::new(); n],
            uplink_of: BTreeMap::new(),
            next_of: BTreeMap::new(),
            wanted: vec![None; n],
            dp_active: vec![None; n],
            tries: vec![0; n],
            sealable: vec![false; n],
            hold_until: None,
            attached_at: 0,
            cmds: VecDeque::new(),
            events: VecDeque::new(),
            stats: SecureStats::default(),
        }
    }

    /// Whether security is on.
    pub fn enabled(&self) -> bool {
        self.ep.is_some()
    }

    /// The endpoint (handshake states, counters).
    pub fn endpoint(&self) -> Option<&Endpoint<E>> {
        self.ep.as_ref()
    }

    /// The endpoint's counters (zero when off).
    pub fn endpoint_stats(&self) -> EndpointStats {
        self.ep.as_ref().map(|e| *e.stats()).unwrap_or_default()
    }

    /// The driver's counters.
    pub fn stats(&self) -> &SecureStats {
        &self.stats
    }

    /// The dataplane was (re-)attached: every peer handshakes again, once the dataplane reported
    /// the keys it still holds (or after [`INVENTORY_WAIT`]). Queued commands were for the
    /// dataplane before: dropped.
    pub fn attached(&mut self, now: Nanos) {
        let Some(ep) = &mut self.ep else { return };
        ep.reset(now);
        self.cmds.clear();
        self.tries.iter_mut().for_each(|t| *t = 0);
        self.hold_until = Some(now.saturating_add(INVENTORY_WAIT));
        self.attached_at = now;
    }

    /// Whether the failover driver may take path `p` as a candidate now. Before the next gateway
    /// of a path (its waypoint, else the peer) has a session that we send with, no probe can be
    /// sealed on it: its probes would be refused and counted as failures, and the first path
    /// whose handshake finished would win the destination's first race alone. So a
    /// destination's paths are held back together until every one of them can be sealed, for
    /// at most [`PATH_KEY_GRACE`] after an attach (the dataplane reports its paths every 100
    /// ms: the next report after the last handshake brings them). A key the dataplane kept
    /// from before the attach, which opened a packet from the peer recently, counts (a
    /// restarted control decides at once, as the dataplane seals with it meanwhile). Always
    /// true with security off.
    pub fn path_sealable(&self, p: &PathTelemetry, now: Nanos) -> bool {
        let Some(ep) = &self.ep else { return true };
        if now.saturating_sub(self.attached_at) >= PATH_KEY_GRACE {
            return true;
        }
        let sealable = |next: u32| {
            ep.peer(next)
                .is_some_and(|h| h.sealable(now, PATH_KEY_GRACE))
        };
        let dest = p.path >> 16;
        sealable(next_gateway(p))
            && self
                .next_of
                .range(dest << 16..=(dest << 16 | 0xFFFF))
                .all(|(_, &n)| sealable(n))
    }

    /// How many peers became sealable (a session we send with, that the peer opens:
    /// [`Handshaker::sealable`](super::handshake::Handshaker::sealable)) since the last call. Until then the dataplane drops what it
    /// sends them (`no_session`), and the peer what we send with a key it does not hold yet:
    /// the flows' losses of that time say nothing of the links' capacities (the planner
    /// settles on it). Always 0 with security off.
    pub fn newly_sealable(&mut self, now: Nanos) -> usize {
        let Some(ep) = &self.ep else { return 0 };
        let mut n = 0;
        for (i, was) in self.sealable.iter_mut().enumerate() {
            let is = u32::try_from(i)
                .ok()
                .and_then(|p| ep.peer(p))
                .is_some_and(|h| h.sealable(now, PATH_KEY_GRACE));
            if is && !*was {
                n += 1;
            }
            *was = is;
        }
        n
    }

    /// The path the failover driver wants `peer`'s traffic on (handshakes prefer it).
    pub fn set_active_path(&mut self, peer: usize, path: Option<u32>) {
        if let Some(w) = self.wanted.get_mut(peer) {
            *w = path;
        }
    }

    /// A message from dataplane worker `worker`.
    pub fn on_telemetry(&mut self, worker: usize, t: &Telemetry, now: Nanos) {
        if self.ep.is_none() {
            return;
        }
        match t {
            Telemetry::Paths { count, items } => {
                let n = usize::try_from(*count)
                    .unwrap_or(usize::MAX)
                    .min(items.len());
                self.on_paths(&items[..n]);
                // A worker's report sends its key usage right after its paths, published
                // together (none when it holds no key): once the telemetry drained with this
                // message has been taken, the inventory is complete.
                self.hold_until = None;
            }
            Telemetry::Handshake(h) => self.on_handshake(h, now),
            Telemetry::Keys { count, items } => {
                let n = usize::try_from(*count)
                    .unwrap_or(usize::MAX)
                    .min(items.len());
                for u in &items[..n] {
                    if usize::try_from(u.peer).map_or(true, |p| p >= self.npeers)
                        || super::handshake::peer_of_index(u.local_index) != u.peer
                    {
                        self.stats.bad_key_reports += 1;
                        continue;
                    }
                    if let Some(ep) = &mut self.ep {
                        ep.on_key_usage(
                            u.local_index,
                            worker,
                            u.sent,
                            u.last_rx_ns,
                            u.confirmed,
                            now,
                        );
                    }
                }
                // The inventory is in: handshakes may start.
                self.hold_until = None;
                self.collect();
            }
            _ => {}
        }
    }

    fn on_paths(&mut self, items: &[PathTelemetry]) {
        for p in items {
            let peer = usize::try_from(p.path >> 16).unwrap_or(usize::MAX);
            if peer >= self.npeers || usize::from(p.uplink) >= self.nuplinks {
                continue;
            }
            self.uplink_of.insert(p.path, p.uplink);
            self.next_of.insert(p.path, next_gateway(p));
            if p.via == u16::MAX {
                let d = &mut self.direct[peer];
                if let Err(i) = d.binary_search(&p.path) {
                    d.insert(i, p.path);
                }
                if p.active {
                    self.dp_active[peer] = Some(p.path);
                }
            }
        }
        if let Some(ep) = &mut self.ep {
            for (peer, d) in self.direct.iter().enumerate() {
                ep.set_ready(u32::try_from(peer).unwrap_or(u32::MAX), !d.is_empty());
            }
        }
    }

    /// A path on `uplink` to answer on: `peer`'s direct one there if it has one, else any.
    fn reply_path(&self, uplink: u32, peer: Option<u32>) -> Option<u32> {
        let on = |r: &u32| {
            self.uplink_of
                .get(r)
                .is_some_and(|u| u32::from(*u) == uplink)
        };
        let own = peer
            .and_then(|p| self.direct.get(usize::try_from(p).ok()?))
            .and_then(|d| d.iter().copied().find(|r| on(r)));
        own.or_else(|| self.uplink_of.keys().copied().find(|r| on(r)))
    }

    fn on_handshake(&mut self, h: &HandshakeIn, now: Nanos) {
        let len = usize::from(h.len);
        let Some(bytes) = h.bytes.get(..len) else {
            self.stats.bad_telemetry += 1;
            return;
        };
        if bytes.first() != Some(&h.msg_type) || MessageType::from_u8(h.msg_type).is_none() {
            self.stats.bad_telemetry += 1;
            return;
        }
        let src = Source {
            addr: h.src,
            port: h.src_port,
        };
        let Some(ep) = &mut self.ep else { return };
        let answer = ep.on_message(bytes, src, now);
        // Keys first: they must be in the dataplane before the answer completes the handshake.
        self.collect();
        if let Some((msg, peer)) = answer {
            match self.reply_path(h.port, peer) {
                Some(path) => self.send(path, Some((h.src, h.src_port)), &msg),
                None => self.stats.no_path += 1,
            }
        }
    }

    fn send(&mut self, path: u32, dst: Option<(IpAddr, u16)>, msg: &MessageBuf) {
        let mut bytes = [0u8; HANDSHAKE_MAX];
        let n = msg.len().min(HANDSHAKE_MAX);
        bytes[..n].copy_from_slice(&msg.as_bytes()[..n]);
        self.stats.sent += 1;
        self.cmds.push_back(Command::SendHandshake(HandshakeOut {
            path,
            dst,
            msg_type: msg.message_type().map_or(0, |t| t as u8),
            len: u16::try_from(n).unwrap_or(0),
            bytes,
        }));
    }

    /// The path of `peer`'s next initiation: its active path first, its other direct paths on
    /// retries.
    fn initiation_path(&mut self, peer: usize) -> Option<u32> {
        let d = self.direct.get(peer)?;
        if d.is_empty() {
            return None;
        }
        let active = self.wanted[peer]
            .filter(|r| d.contains(r))
            .or(self.dp_active[peer])
            .filter(|r| d.contains(r))
            .unwrap_or(d[0]);
        let t = self.tries[peer];
        self.tries[peer] += 1;
        if t == 0 {
            return Some(active);
        }
        let start = d.iter().position(|r| *r == active).unwrap_or(0);
        Some(d[(start + t) % d.len()])
    }

    /// Moves the endpoint's outputs into commands and events.
    fn collect(&mut self) {
        while let Some((peer, o)) = self.ep.as_mut().and_then(Endpoint::poll_output) {
            let p = usize::try_from(peer).unwrap_or(usize::MAX);
            match o {
                Output::Install(k) => {
                    self.stats.installed += 1;
                    self.cmds
                        .push_back(Command::InstallKey(key_install(peer, &k)));
                }
                Output::Revoke(local_index) => {
                    self.stats.revoked += 1;
                    self.cmds.push_back(Command::RevokeKey { local_index });
                }
                Output::Initiation(m) => match self.initiation_path(p) {
                    Some(path) => self.send(path, None, &m),
                    None => self.stats.no_path += 1,
                },
                Output::Event(event) => {
                    if let Event::Established { .. } | Event::Confirmed { .. } = event
                        && let Some(t) = self.tries.get_mut(p)
                    {
                        *t = 0;
                    }
                    if self.events.len() >= MAX_EVENTS {
                        self.events.pop_front();
                    }
                    self.events.push_back(SecureEvent { peer, event });
                }
            }
        }
    }

    /// The earliest time [`Self::poll`] has something new to do (beyond queued commands).
    pub fn poll_timeout(&self) -> Option<Nanos> {
        let ep = self.ep.as_ref()?;
        match self.hold_until {
            Some(h) => Some(h),
            None => ep.poll_timeout(),
        }
    }

    /// The next command for the dataplane: runs the timers when due, then hands out what is
    /// queued. A command the ring had no room for goes back with [`Self::requeue`].
    pub fn poll(&mut self, now: Nanos) -> Option<Command> {
        if self.cmds.is_empty()
            && let Some(ep) = &mut self.ep
        {
            if self.hold_until.is_some_and(|h| now >= h) {
                self.hold_until = None;
            }
            if self.hold_until.is_none() && ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
                self.collect();
            }
        }
        self.cmds.pop_front()
    }

    /// Puts back a command [`Self::poll`] gave that could not be sent (it goes out first).
    pub fn requeue(&mut self, cmd: Command) {
        self.cmds.push_front(cmd);
    }

    /// Log lines since the last call.
    pub fn take_events(&mut self) -> Vec<SecureEvent> {
        self.events.drain(..).collect()
    }
}

/// Commands that go to every worker (keys) rather than to one (handshake messages).
pub fn is_broadcast(cmd: &Command) -> bool {
    matches!(cmd, Command::InstallKey(_) | Command::RevokeKey { .. })
}

/// The ring form of a key pair for `peer`.
pub fn key_install(peer: u32, k: &SessionKeys) -> KeyInstall {
    KeyInstall {
        peer,
        local_index: k.local_index,
        remote_index: k.remote_index,
        send_key: k.send,
        recv_key: k.recv,
        initiator: k.initiator,
        created_ns: k.created,
    }
}

#[cfg(test)]
mod tests;
