//! The pure parts: message codec and the plan assembler.

use super::msg::{CHUNK_ENTRIES, Command, MSG_WORDS, Msg, PlanEntry, Telemetry};
use super::plan::{
    Event, PlanAssembler, Refusal, checksum, epoch_newer, plan_commands, plan_entries,
};
use crate::plan::{PlanShape, PlanTable};
use proptest::prelude::*;

/// 4 classes, 24 flows (flow f belongs to class f % 4).
fn shape() -> PlanShape {
    PlanShape::new(4, (0..24).map(|f| f % 4).collect())
}

/// A valid plan of `epoch` whose every value is derived from the epoch.
fn entries(epoch: u64) -> Vec<PlanEntry> {
    let mut v: Vec<PlanEntry> = (0..4)
        .map(|c| PlanEntry::Class {
            class: c,
            sessions: u32::try_from(epoch % 1000).unwrap() + c,
        })
        .collect();
    v.extend((0..24).map(|f| PlanEntry::Flow {
        flow: f,
        rate_mbps: epoch as f64 + f64::from(f),
        weight: 1.0 + f64::from(f),
        floored: f % 3 == 0,
    }));
    v
}

fn feed(a: &mut PlanAssembler, cmds: &[Command], now: u64) -> Vec<Event> {
    cmds.iter()
        .map(|c| a.on_command(c, now))
        .filter(|e| *e != Event::None)
        .collect()
}

fn asm() -> PlanAssembler {
    PlanAssembler::new(shape(), 1_000_000)
}

#[test]
fn plan_stages_then_switches_on_the_active_word() {
    let mut a = asm();
    let cmds = plan_commands(5, &entries(5));
    assert!(cmds.len() > 3, "several chunks");
    assert_eq!(feed(&mut a, &cmds, 0), vec![Event::Staged(5)]);
    assert_eq!(a.active().epoch, 0, "staged, not running");
    assert_eq!(a.on_active_epoch(0, 1), Event::None);
    assert_eq!(a.on_active_epoch(5, 2), Event::Switched(5));
    let p = a.active();
    assert_eq!(p.epoch, 5);
    assert_eq!(p.sessions, vec![5, 6, 7, 8]);
    assert_eq!(p.rate_mbps[23], 28.0);
    assert_eq!(p.weight[3], 4.0);
    assert!(
        p.floored[3] && !p.floored[4],
        "the floored flag goes through"
    );
    assert_eq!(a.counters().switched, 1);
    assert_eq!(a.counters().refused(), 0);
}

fn run(a: &mut PlanAssembler, epoch: u64) {
    feed(a, &plan_commands(epoch, &entries(epoch)), 0);
    assert_eq!(a.on_active_epoch(epoch, 0), Event::Switched(epoch));
}

#[test]
fn out_of_order_chunk_refused_and_old_plan_stays() {
    let mut a = asm();
    run(&mut a, 1);
    let mut cmds = plan_commands(2, &entries(2));
    cmds.swap(1, 2);
    let ev = feed(&mut a, &cmds, 0);
    assert_eq!(ev[0], Event::Refused(2, Refusal::OutOfOrder));
    assert!(ev.contains(&Event::Refused(2, Refusal::Incomplete)));
    assert_eq!(a.staged_epoch(), None);
    assert_eq!(a.on_active_epoch(1, 0), Event::None);
    assert_eq!(a.active().epoch, 1);
    assert_eq!(a.active().sessions, vec![1, 2, 3, 4]);
    // A repeated chunk is out of order too.
    let cmds = plan_commands(3, &entries(3));
    let mut rep = vec![cmds[0], cmds[1], cmds[1]];
    rep.extend_from_slice(&cmds[2..]);
    assert_eq!(
        feed(&mut a, &rep, 0)[0],
        Event::Refused(3, Refusal::OutOfOrder)
    );
}

#[test]
fn checksum_mismatch_refused() {
    let mut a = asm();
    let mut cmds = plan_commands(4, &entries(4));
    if let Some(Command::PlanCommit { checksum, .. }) = cmds.last_mut() {
        *checksum ^= 1;
    }
    assert_eq!(
        feed(&mut a, &cmds, 0),
        vec![Event::Refused(4, Refusal::Checksum)]
    );
    // A chunk altered in flight (commit computed on the original) too.
    let mut cmds = plan_commands(4, &entries(4));
    if let Command::PlanChunk(c) = &mut cmds[1] {
        c.entries[0] = PlanEntry::Flow {
            flow: 5,
            rate_mbps: 99.0,
            weight: 1.0,
            floored: false,
        };
    }
    assert_eq!(
        feed(&mut a, &cmds, 0),
        vec![Event::Refused(4, Refusal::Checksum)]
    );
    assert_eq!(a.counters().checksum, 2);
    assert_eq!(a.active().epoch, 0);
}

#[test]
fn invalid_plans_refused() {
    let bad: Vec<Vec<PlanEntry>> = vec![
        // class 3 admits sessions, none of its flows has a rate
        vec![
            PlanEntry::Class {
                class: 3,
                sessions: 2,
            },
            PlanEntry::Flow {
                flow: 0,
                rate_mbps: 1.0,
                weight: 1.0,
                floored: false,
            },
        ],
        vec![PlanEntry::Flow {
            flow: 24,
            rate_mbps: 1.0,
            weight: 1.0,
            floored: false,
        }],
        vec![PlanEntry::Class {
            class: 4,
            sessions: 0,
        }],
        vec![PlanEntry::Flow {
            flow: 1,
            rate_mbps: f64::NAN,
            weight: 1.0,
            floored: false,
        }],
        vec![PlanEntry::Flow {
            flow: 1,
            rate_mbps: 1.0,
            weight: -1.0,
            floored: false,
        }],
        vec![PlanEntry::Flow {
            flow: 1,
            rate_mbps: f64::INFINITY,
            weight: 1.0,
            floored: false,
        }],
        vec![
            PlanEntry::Flow {
                flow: 1,
                rate_mbps: 1.0,
                weight: 1.0,
                floored: false,
            },
            PlanEntry::Flow {
                flow: 1,
                rate_mbps: 2.0,
                weight: 1.0,
                floored: false,
            },
        ],
    ];
    let mut a = asm();
    for (i, e) in bad.iter().enumerate() {
        let epoch = 10 + i as u64;
        let ev = feed(&mut a, &plan_commands(epoch, e), 0);
        assert_eq!(ev[0], Event::Refused(epoch, Refusal::Invalid), "case {i}");
    }
    assert_eq!(a.counters().invalid, bad.len() as u64);
    assert_eq!(a.active().epoch, 0);
    assert_eq!(a.staged_epoch(), None);
}

#[test]
fn stale_epochs_refused() {
    let mut a = asm();
    run(&mut a, 7);
    let ev = feed(&mut a, &plan_commands(7, &entries(7)), 0);
    assert!(ev.iter().all(|e| *e == Event::Refused(7, Refusal::Stale)));
    feed(&mut a, &plan_commands(3, &entries(3)), 0);
    assert_eq!(a.active().epoch, 7);
    assert!(a.counters().stale >= 2);
}

#[test]
fn too_many_chunks_refused() {
    let mut a = asm();
    let mut cmds = plan_commands(2, &entries(2));
    if let Command::PlanChunk(c) = &mut cmds[0] {
        c.total = 1000;
    }
    assert_eq!(
        feed(&mut a, &cmds[..1], 0),
        vec![Event::Refused(2, Refusal::TooLarge)]
    );
}

#[test]
fn partial_plan_times_out_and_newer_plan_abandons_older() {
    let mut a = asm();
    let cmds = plan_commands(2, &entries(2));
    feed(&mut a, &cmds[..2], 0);
    assert_eq!(a.building_epoch(), Some(2));
    a.tick(2_000_000);
    assert_eq!(a.building_epoch(), None);
    assert_eq!(a.counters().timeouts, 1);
    // Rest of epoch 2 arrives late: refused.
    let ev = feed(&mut a, &cmds[2..], 2_000_001);
    assert_eq!(ev[0], Event::Refused(2, Refusal::OutOfOrder));
    // Half of 3, then all of 4: 3 abandoned, 4 staged.
    let c3 = plan_commands(3, &entries(3));
    feed(&mut a, &c3[..2], 3_000_000);
    let ev = feed(&mut a, &plan_commands(4, &entries(4)), 3_000_000);
    assert_eq!(ev, vec![Event::Staged(4)]);
    assert_eq!(a.counters().abandoned, 1);
    // Chunk 0 of the epoch being built restarts it.
    let c5 = plan_commands(5, &entries(5));
    feed(&mut a, &c5[..3], 3_000_000);
    assert_eq!(feed(&mut a, &c5, 3_000_000), vec![Event::Staged(5)]);
    assert_eq!(a.counters().abandoned, 2);
    // Leftovers of 3 are now stale.
    assert_eq!(
        feed(&mut a, &c3[2..3], 3_000_000)[0],
        Event::Refused(3, Refusal::Stale)
    );
}

#[test]
fn active_word_naming_an_unstaged_epoch_is_counted_once() {
    let mut a = asm();
    run(&mut a, 1);
    assert_eq!(
        a.on_active_epoch(9, 0),
        Event::Refused(9, Refusal::NotStaged)
    );
    assert_eq!(a.on_active_epoch(9, 0), Event::None);
    assert_eq!(a.counters().not_staged, 1);
    assert_eq!(a.active().epoch, 1);
}

#[test]
fn a_table_arrives_whole() {
    let mut t = PlanTable::empty(&shape());
    t.sessions[2] = 7;
    t.rate_mbps[6] = 1.5;
    t.weight[6] = 0.25;
    t.weight[23] = 2.0;
    assert_eq!(t.check(&shape()), Ok(()));
    let e = plan_entries(&t);
    assert_eq!(e.len(), 4 + 24);
    let mut a = asm();
    assert_eq!(
        feed(&mut a, &plan_commands(6, &e), 0),
        vec![Event::Staged(6)]
    );
    assert_eq!(a.on_active_epoch(6, 0), Event::Switched(6));
    t.epoch = 6;
    assert_eq!(a.active(), &t);
}

#[test]
fn empty_plan_is_one_chunk() {
    let mut a = asm();
    let cmds = plan_commands(3, &[]);
    assert_eq!(cmds.len(), 2);
    assert_eq!(feed(&mut a, &cmds, 0), vec![Event::Staged(3)]);
}

#[test]
fn commands_round_trip() {
    for c in plan_commands(9, &entries(9)) {
        assert_eq!(Command::decode(&c.encode()), Ok(c));
    }
    let t = Telemetry::PlanAck {
        worker: 3,
        epoch: 8,
        status: super::msg::AckStatus::Staged,
    };
    assert_eq!(Telemetry::decode(&t.encode()), Ok(t));
    assert!(
        Command::decode(&t.encode()).is_err(),
        "directions do not mix"
    );
    let mut items = [super::msg::PeerTelemetry::default(); super::msg::PEERS_PER_MSG];
    items[0] = super::msg::PeerTelemetry {
        peer: 2,
        direct: 3,
        direct_up: 1,
        switches: 65535,
    };
    let t = Telemetry::Peers { count: 1, items };
    assert_eq!(Telemetry::decode(&t.encode()), Ok(t));
    // More paths up than exist: refused.
    let mut m = t.encode();
    m.w[0] = 1 << 16;
    assert!(Telemetry::decode(&m).is_err());
    let mut paths = [super::msg::PathTelemetry::default(); super::msg::PATHS_PER_MSG];
    paths[0] = super::msg::PathTelemetry {
        path: 2 << 16 | 3,
        uplink: 1,
        via: u16::MAX,
        remote: 2,
        up: true,
        active: false,
        srtt_us: 10_250,
        rx_recent: true,
    };
    paths[14] = super::msg::PathTelemetry {
        path: 1,
        via: 2,
        active: true,
        ..super::msg::PathTelemetry::default()
    };
    paths[13] = super::msg::PathTelemetry {
        path: 5,
        srtt_us: super::msg::SRTT_US_MAX,
        ..super::msg::PathTelemetry::default()
    };
    let t = Telemetry::Paths {
        count: 15,
        items: paths,
    };
    assert_eq!(Telemetry::decode(&t.encode()), Ok(t));
    // A flag that is neither 0 nor 1: refused.
    for shift in [40, 32, 24] {
        let mut m = t.encode();
        m.w[1] |= 2 << shift;
        assert!(Telemetry::decode(&m).is_err(), "{shift}");
    }
    // An RTT beyond 24 bits is sent as the largest one.
    let mut long = paths;
    long[13].srtt_us = u32::MAX;
    let got = Telemetry::decode(
        &Telemetry::Paths {
            count: 15,
            items: long,
        }
        .encode(),
    );
    assert_eq!(got, Ok(t));
    let t = Telemetry::PathEvent {
        path: 1 << 16 | 4,
        event: super::msg::PathEventKind::AckGap,
        at_ns: 123,
    };
    assert_eq!(Telemetry::decode(&t.encode()), Ok(t));
    let mut m = t.encode();
    m.w[1] = 9;
    assert!(Telemetry::decode(&m).is_err());
    let mut flows = [super::msg::FlowTelemetry::default(); super::msg::FLOW_TEL_PER_MSG];
    flows[super::msg::FLOW_TEL_PER_MSG - 1] = super::msg::FlowTelemetry {
        flow: 7,
        path: super::msg::PATH_NONE,
        rate_bps: 1,
        acks: 2,
        losses: 3,
        queue_drops: 4,
        tx_bytes: 5,
    };
    let t = Telemetry::Flows {
        count: u32::try_from(super::msg::FLOW_TEL_PER_MSG).unwrap(),
        items: flows,
    };
    assert_eq!(Telemetry::decode(&t.encode()), Ok(t));
    assert_eq!(checksum(1, &entries(1)), checksum(1, &entries(1)));
    assert_ne!(checksum(1, &entries(1)), checksum(2, &entries(1)));
}

#[test]
fn class_telemetry_round_trips_with_waiting_sessions() {
    use super::msg::{CLASSES_PER_MSG, ClassTelemetry, MSG_WORDS};
    assert_eq!(CLASSES_PER_MSG * 2, MSG_WORDS, "two words per class");
    let mut items = [ClassTelemetry::default(); CLASSES_PER_MSG];
    for (i, c) in items.iter_mut().enumerate() {
        let i = u32::try_from(i).unwrap();
        *c = ClassTelemetry {
            class: i,
            active: u32::MAX - i,
            waiting: 7 * i + 1,
        };
    }
    let full = u32::try_from(CLASSES_PER_MSG).unwrap();
    let t = Telemetry::Classes { count: full, items };
    let m = t.encode();
    assert_eq!(m.w[0], u64::from(u32::MAX) << 32);
    assert_eq!((m.w[1], m.w[3]), (1, 8), "waiting in the second word");
    assert_eq!(Telemetry::decode(&m), Ok(t));
    // Fewer records: the unused ones decode as zero.
    let mut part = items;
    part[2..].fill(ClassTelemetry::default());
    let t = Telemetry::Classes { count: 2, items };
    assert_eq!(
        Telemetry::decode(&t.encode()),
        Ok(Telemetry::Classes {
            count: 2,
            items: part
        })
    );
    // Too many records, or a waiting count beyond 32 bits: refused.
    let mut bad = m;
    bad.len = full + 1;
    assert!(Telemetry::decode(&bad).is_err());
    let mut bad = m;
    bad.w[3] = 1 << 32;
    assert!(Telemetry::decode(&bad).is_err());
}

#[test]
fn security_messages_round_trip() {
    use super::msg::{
        HANDSHAKE_MAX, HandshakeIn, HandshakeOut, KEYS_PER_MSG, KeyInstall, KeyUsage,
    };
    use core::net::IpAddr;
    let k = KeyInstall {
        peer: 3,
        local_index: 0xdead_b001,
        remote_index: 0x1234_5678,
        send_key: core::array::from_fn(|i| i.to_le_bytes()[0]),
        recv_key: core::array::from_fn(|i| 0xff - i.to_le_bytes()[0]),
        initiator: true,
        created_ns: 99,
    };
    let c = Command::InstallKey(k);
    assert_eq!(Command::decode(&c.encode()), Ok(c));
    assert!(!format!("{k:?}").contains("254"), "Debug hides key bytes");
    let mut m = c.encode();
    m.w[1] |= 2 << 32;
    assert_eq!(Command::decode(&m), Err(super::msg::DecodeError::Field));
    let c = Command::RevokeKey {
        local_index: u32::MAX,
    };
    assert_eq!(Command::decode(&c.encode()), Ok(c));
    let mut m = c.encode();
    m.w[0] = 1 << 32;
    assert!(Command::decode(&m).is_err());
    let bytes: [u8; HANDSHAKE_MAX] = core::array::from_fn(|i| (i * 3).to_le_bytes()[0]);
    for dst in [
        None,
        Some(("192.0.2.7".parse::<IpAddr>().unwrap(), 40000)),
        Some(("2001:db8::1".parse::<IpAddr>().unwrap(), 6081)),
    ] {
        let c = Command::SendHandshake(HandshakeOut {
            path: 1 << 16 | 2,
            dst,
            msg_type: 4,
            len: 148,
            bytes,
        });
        let m = c.encode();
        assert_eq!(m.kind, 7);
        assert_eq!(m.len, 148);
        assert_eq!(Command::decode(&m), Ok(c));
    }
    let t = Telemetry::Handshake(HandshakeIn {
        port: 1,
        src: "2001:db8::9".parse().unwrap(),
        src_port: 51000,
        msg_type: 5,
        len: 92,
        bytes,
    });
    assert_eq!(Telemetry::decode(&t.encode()), Ok(t));
    // Wrong type, length beyond 200, unknown family, IPv4 with garbage: refused.
    for f in [
        |m: &mut Msg| m.w[0] = (m.w[0] & !(0xFF << 32)) | 3 << 32,
        |m: &mut Msg| m.len = 201,
        |m: &mut Msg| m.w[0] = (m.w[0] & !(0xFF << 40)) | 5 << 40,
        |m: &mut Msg| m.w[0] = (m.w[0] & !(0xFF << 40)) | 4 << 40,
    ] {
        let mut m = t.encode();
        f(&mut m);
        assert!(Telemetry::decode(&m).is_err());
    }
    let mut items = [KeyUsage::default(); KEYS_PER_MSG];
    items[KEYS_PER_MSG - 1] = KeyUsage {
        local_index: 7,
        peer: 1,
        sent: 1 << 60,
        received: 5,
        last_rx_ns: 6,
        confirmed: true,
    };
    let t = Telemetry::Keys {
        count: u32::try_from(KEYS_PER_MSG).unwrap(),
        items,
    };
    assert_eq!(Telemetry::decode(&t.encode()), Ok(t));
    let mut m = t.encode();
    m.w[4] = 2;
    assert!(Telemetry::decode(&m).is_err());
    m.w[4] = 0;
    m.len = u32::try_from(KEYS_PER_MSG).unwrap() + 1;
    assert!(Telemetry::decode(&m).is_err());
}

#[test]
fn epochs_are_serial_numbers() {
    assert!(epoch_newer(2, 1) && !epoch_newer(1, 2) && !epoch_newer(5, 5));
    // u64::MAX is no dead end: 0 and 1 come after it.
    assert!(epoch_newer(0, u64::MAX) && epoch_newer(1, u64::MAX));
    assert!(epoch_newer(u64::MAX, u64::MAX - 1));
    // Half the circle ahead is newer, the other half older.
    assert!(epoch_newer((1 << 63) - 1, 0) && !epoch_newer(1 << 63, 0));
    // Exactly opposite: neither (a new session resolves it).
    assert!(!epoch_newer(0, 1 << 63) && !epoch_newer(1 << 63, 0));
}

/// Stages and runs the plan of `epoch`: true when it is then running.
fn install(a: &mut PlanAssembler, epoch: u64, now: u64) -> bool {
    let ev = feed(a, &plan_commands(epoch, &entries(epoch)), now);
    if ev != [Event::Staged(epoch)] {
        return false;
    }
    a.on_active_epoch(epoch, now) == Event::Switched(epoch)
}

#[test]
fn absurd_epoch_does_not_lock_out_the_next_plan() {
    let mut a = asm();
    a.on_session(1);
    assert!(install(&mut a, 5, 0));
    // Within a session u64::MAX lies "behind" 5: refused.
    assert!(!install(&mut a, u64::MAX, 1));
    assert!(a.counters().stale > 0);
    // A writer starting a session pushes it: accepted (any epoch opens a
    // session) ...
    a.on_session(2);
    assert!(install(&mut a, u64::MAX, 2));
    // ... and it is no dead end: older ones stay refused, the epoch after
    // it (1: the control skips 0) is taken.
    assert!(!install(&mut a, u64::MAX - 1, 3));
    assert!(install(&mut a, 1, 4));
    assert_eq!(a.active().epoch, 1);
}

#[test]
fn a_new_session_accepts_any_epoch_once() {
    let mut a = asm();
    a.on_session(7);
    assert!(install(&mut a, 1 << 62, 0));
    assert!(!a.session_open());
    assert!(!install(&mut a, 3, 1), "older: refused within a session");
    // A new control attaches: its first plan may carry any epoch ...
    a.on_session(8);
    assert!(a.session_open());
    assert!(install(&mut a, 3, 2));
    assert!(!a.session_open());
    // ... and after that the order holds again.
    assert!(!install(&mut a, 2, 3));
    assert!(install(&mut a, 4, 4));
    // The same word again changes nothing; a half plan of an old session
    // is dropped when a new one starts.
    a.on_session(8);
    assert!(!a.session_open());
    let cmds = plan_commands(9, &entries(9));
    assert!(feed(&mut a, &cmds[..1], 5).is_empty());
    a.on_session(9);
    assert_eq!(a.building_epoch(), None);
    assert_eq!(a.counters().abandoned, 1);
}

fn arb_msg() -> impl Strategy<Value = Msg> {
    (
        prop_oneof![0u32..28, any::<u32>()],
        prop_oneof![0u32..40, any::<u32>()],
        0u64..8,
        proptest::collection::vec(
            prop_oneof![any::<u64>(), (0u64..3).prop_map(|t| t << 32), 0u64..32],
            MSG_WORDS,
        ),
    )
        .prop_map(|(kind, len, epoch, w)| Msg {
            kind,
            len,
            epoch,
            w: w.try_into().unwrap(),
        })
}

proptest! {
    /// Any bytes: decoding never panics, and feeding whatever decodes to
    /// the assembler leaves it running either the old plan or a whole valid
    /// one with a newer epoch.
    #[test]
    fn random_messages_never_panic_nor_mix(msgs in proptest::collection::vec(arb_msg(), 0..200), words in proptest::collection::vec(0u64..10, 0..20)) {
        let mut a = asm();
        let mut last = a.active().clone();
        for (i, m) in msgs.iter().enumerate() {
            let _ = Telemetry::decode(m);
            match Command::decode(m) {
                Ok(c) => { a.on_command(&c, i as u64); }
                Err(_) => a.count_decode_error(),
            }
            if let Some(w) = words.get(i) {
                a.on_active_epoch(*w, i as u64);
            }
            let p = a.active();
            if p.epoch != last.epoch {
                prop_assert!(epoch_newer(p.epoch, last.epoch));
                // whole and valid: every value finite and non-negative
                prop_assert!(p.rate_mbps.iter().chain(&p.weight).all(|v| v.is_finite() && *v >= 0.0));
                last = p.clone();
            } else {
                prop_assert_eq!(p, &last);
            }
        }
    }

    /// Decoded security messages encode back to the same words.
    #[test]
    fn security_messages_decode_canonically(m in arb_msg(), k in 5u32..8, t in 24u32..26) {
        for (kind, cmd) in [(k, true), (t, false)] {
            let m = Msg { kind, ..m };
            if cmd {
                if let Ok(c) = Command::decode(&m) {
                    prop_assert_eq!(Command::decode(&c.encode()), Ok(c));
                }
            } else if let Ok(x) = Telemetry::decode(&m) {
                prop_assert_eq!(Telemetry::decode(&x.encode()), Ok(x));
            }
        }
    }

    /// Chunks round-trip through the wire form.
    #[test]
    fn chunk_round_trip(epoch in any::<u64>(), n in 0usize..=CHUNK_ENTRIES, rate in any::<f64>()) {
        let e: Vec<PlanEntry> = (0..n).map(|i| PlanEntry::Flow { flow: u32::try_from(i).unwrap(), rate_mbps: rate, weight: 1.0, floored: false }).collect();
        for c in plan_commands(epoch, &e) {
            let d = Command::decode(&c.encode()).unwrap();
            // NaN != NaN: compare the wire words instead.
            prop_assert_eq!(d.encode(), c.encode());
        }
    }
}

/// The detours' spare capacity goes through the rings: a plan for 3 peers
/// carrying two known detours stages with them (the rest "not known"), and
/// back to the same entries; a detour out of range, repeated, negative or
/// NaN makes the plan invalid.
#[test]
fn detour_entries_go_through_and_bad_ones_are_refused() {
    let shape = shape().with_peers(3);
    let mut a = PlanAssembler::new(shape.clone(), 1_000_000);
    let mut e = entries(5);
    e.push(PlanEntry::Detour {
        peer: 0,
        via: 2,
        mbps: 0.0,
    });
    e.push(PlanEntry::Detour {
        peer: 2,
        via: 1,
        mbps: 0.25,
    });
    assert_eq!(
        feed(&mut a, &plan_commands(5, &e), 0),
        vec![Event::Staged(5)]
    );
    assert_eq!(a.on_active_epoch(5, 1), Event::Switched(5));
    let p = a.active().clone();
    assert_eq!(p.check(&shape), Ok(()));
    assert_eq!(p.detour(2, 1), 0.25);
    assert_eq!(p.detour(0, 2), 0.0);
    assert_eq!(p.detour(1, 2), f64::INFINITY, "not sent: not known");
    assert_eq!(p.detour(3, 0), f64::INFINITY, "past the end");
    assert_eq!(plan_entries(&p), e, "the known ones, in table order");
    // Each entry's words decode to itself.
    for d in &e[e.len() - 2..] {
        assert_eq!(PlanEntry::from_words(d.words()), Ok(*d));
    }
    let bad = [
        (3, 0, 1.0),
        (0, 3, 1.0),
        (1, 1, -0.5),
        (1, 1, f64::NAN),
        (1, 1, f64::INFINITY),
    ];
    for (i, (peer, via, mbps)) in bad.into_iter().enumerate() {
        let mut e = entries(9);
        e.push(PlanEntry::Detour { peer, via, mbps });
        let epoch = 10 + i as u64;
        let ev = feed(&mut a, &plan_commands(epoch, &e), 0);
        assert_eq!(ev[0], Event::Refused(epoch, Refusal::Invalid), "case {i}");
    }
    let mut e = entries(20);
    let d = PlanEntry::Detour {
        peer: 1,
        via: 0,
        mbps: 1.0,
    };
    e.extend([d, d]);
    let ev = feed(&mut a, &plan_commands(20, &e), 0);
    assert_eq!(ev[0], Event::Refused(20, Refusal::Invalid), "repeated");
    // A word naming a waypoint beyond 32 bits does not decode.
    let mut w = d.words();
    w[1] = 1 << 40;
    assert!(PlanEntry::from_words(w).is_err());
}
