//! Ack emission at the destination: entries produced by the per-flow
//! aggregators (every N packets or after the delay, `montra::AckPolicy`)
//! wait per source site, at most one per flow (a newer ack supersedes an
//! older one: it is cumulative), and leave from [`crate::engine::Stage::poll`]
//! as one OAM message per source site, in frames of the private reserve.

use super::secure::{EncapFail, encap_oam, key_peer};
use super::{Gateway, MAX_ACK_ENTRIES_PER_MESSAGE, info_to_entry};
use crate::engine::{Arena, Batch, DropReason, Nanos, Packet, Verdict};
use crate::montra::AckInfo;
use crate::wire::oam::{self, AckEntries};

impl Gateway {
    /// Queues the ack of flow `wire_id` for its source site `peer`.
    pub(crate) fn queue_ack(
        &mut self,
        peer: Option<usize>,
        wire_id: u32,
        info: &AckInfo,
        received: u64,
        lost: u64,
    ) {
        let Some(q) = peer.and_then(|p| self.pending_acks.get_mut(p)) else {
            return;
        };
        let e = info_to_entry(wire_id, info, received, lost);
        if let Some(old) = q.iter_mut().find(|x| x.flow_id == wire_id) {
            *old = e;
        } else if q.len() < q.capacity() {
            q.push(e);
        }
    }

    /// Sends the pending acks: one message (up to 32 entries) per source
    /// site per call, while reserve frames and batch room last.
    pub(crate) fn emit_acks(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        for peer in 0..self.pending_acks.len() {
            if self.pending_acks[peer].is_empty() {
                continue;
            }
            let Some(path) = self.peers.get(peer).and_then(|pp| pp.ack_route(now)) else {
                self.pending_acks[peer].clear();
                continue;
            };
            if out.spare() == 0 {
                return;
            }
            let Some(base) = self.reserve.pop() else {
                self.stats.ack_no_frame += 1;
                return;
            };
            let q = &mut self.pending_acks[peer];
            let n = q.len().min(MAX_ACK_ENTRIES_PER_MESSAGE);
            self.oam_seq += 1;
            let params = super::oam_params(self.oam_seq, now);
            let msg = oam::Repr::Ack(AckEntries::Values(&q[..n]));
            let kp = key_peer(peer, path);
            let res = encap_oam(
                &mut self.sec,
                kp,
                &path.template,
                arena,
                base,
                &msg,
                &params,
                now,
            );
            q.drain(..n);
            let port = path.port;
            match res {
                Ok(r) => {
                    let mut pkt = Packet::new(
                        base + r.start as u64,
                        u32::try_from(r.len()).unwrap_or(0),
                        self.settings.lan_port,
                        now,
                    );
                    pkt.verdict = Verdict::Tx(port);
                    out.push(pkt);
                    self.stats.acks_sent += 1;
                    self.stats.ack_entries_sent += n as u64;
                }
                Err(EncapFail::NoSession) => {
                    self.stats.no_session += 1;
                    self.drop_frame(base, DropReason::NoSession, now, out);
                }
                Err(EncapFail::Room) => {
                    self.stats.encap_failed += 1;
                    self.reserve.push(base);
                }
            }
        }
    }
}
