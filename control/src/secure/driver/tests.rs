//! The driver alone: what it sends where, and what it refuses.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use mongate_dataplane::shm::msg::{KEYS_PER_MSG, KeyUsage, PATHS_PER_MSG};
use mongate_dataplane::sys::SEC;

use super::*;
use crate::secure::handshake::SeededEntropy;
use crate::secure::keys::write_key;
use crate::secure::messages::INIT_LEN;

const SITE_A: &str = include_str!("../../../../docs/examples/triangle/site-a.toml");

fn secret(seed: u8) -> StaticSecret {
    StaticSecret::from_bytes([seed; 32])
}

/// Site A of the triangle with keys: A = 1, B = 2, C = 3.
fn config(key_file: &Path) -> Config {
    let text = SITE_A
        .replace(
            "[security]\nmode = \"off\"",
            &format!(
                "[security]\nprivate_key_file = {:?}",
                key_file.display().to_string()
            ),
        )
        .replace(
            "name = \"B\"\n",
            &format!(
                "name = \"B\"\npublic_key = \"{}\"\n",
                secret(2).public_key()
            ),
        )
        .replace(
            "name = \"C\"\n",
            &format!(
                "name = \"C\"\npublic_key = \"{}\"\n",
                secret(3).public_key()
            ),
        );
    Config::from_toml_str(&text, "site-a.toml").unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mongate-sd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn driver() -> SecureDriver<SeededEntropy> {
    let c = config(Path::new("/nonexistent"));
    SecureDriver::new(
        &c,
        secret(1),
        endpoint_config(&c),
        1_760_000_000 * SEC,
        0,
        SeededEntropy::new(1),
    )
    .unwrap()
}

/// B: ab (uplink 0) -> its first address; C: ac (uplink 1) -> its first address; C via B.
fn paths(active_b: u32) -> Telemetry {
    let p = |path: u32, uplink, via, active| PathTelemetry {
        path,
        uplink,
        via,
        remote: 0,
        up: true,
        active,
        srtt_us: 0,
        rx_recent: false,
    };
    let mut items = [PathTelemetry::default(); PATHS_PER_MSG];
    items[0] = p(0, 0, u16::MAX, active_b == 0);
    items[1] = p(1, 1, u16::MAX, active_b == 1);
    items[2] = p(1 << 16, 1, u16::MAX, true);
    items[3] = p((1 << 16) | 1, 0, 0, false);
    Telemetry::Paths { count: 4, items }
}

fn keys(items: &[KeyUsage]) -> Telemetry {
    let mut a = [KeyUsage::default(); KEYS_PER_MSG];
    a[..items.len()].copy_from_slice(items);
    Telemetry::Keys {
        count: u32::try_from(items.len()).unwrap(),
        items: a,
    }
}

/// B's endpoint (secret 2), with A (secret 1) as its peer 0.
fn endpoint_b() -> Endpoint<SeededEntropy> {
    Endpoint::new(
        secret(2),
        &[(0, secret(1).public_key())],
        EndpointConfig::default(),
        1_760_000_000 * SEC,
        0,
        SeededEntropy::new(9),
    )
    .unwrap()
}

fn drain(d: &mut SecureDriver<SeededEntropy>, now: Nanos) -> Vec<Command> {
    std::iter::from_fn(|| d.poll(now)).collect()
}

fn handshakes(cmds: &[Command]) -> Vec<HandshakeOut> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::SendHandshake(h) => Some(*h),
            _ => None,
        })
        .collect()
}

#[test]
fn off_does_nothing() {
    let c = Config::from_toml_str(SITE_A, "site-a.toml").unwrap();
    let mut d = SecureDriver::from_config(&c, 0).unwrap();
    assert!(!d.enabled());
    d.on_telemetry(0, &paths(0), 0);
    d.attached(0);
    assert!(d.poll(10 * SEC).is_none());
    assert_eq!(d.poll_timeout(), None);
}

#[test]
fn refuses_a_key_file_others_can_read() {
    let dir = tmp("mode");
    let f = dir.join("a.key");
    write_key(&f, [1; 32]).unwrap();
    let c = config(&f);
    assert!(SecureDriver::from_config(&c, 0).is_ok());
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = SecureDriver::from_config(&c, 0).unwrap_err();
    assert!(
        matches!(e, SecureError::Key(KeyError::Unsafe { .. })),
        "{e}"
    );
    assert!(SecureDriver::from_config(&config(&dir.join("missing")), 0).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn waits_for_a_report_then_initiates_on_the_active_path() {
    let mut d = driver();
    assert!(drain(&mut d, 0).is_empty());
    // Keys alone (no path known): nothing to send yet.
    d.on_telemetry(0, &keys(&[]), 0);
    assert!(drain(&mut d, 10 * MS).is_empty());
    d.on_telemetry(0, &paths(1), 20 * MS);
    let cmds = drain(&mut d, 20 * MS);
    let hs = handshakes(&cmds);
    assert_eq!(hs.len(), 2, "{cmds:?}");
    for h in &hs {
        assert_eq!((h.msg_type, usize::from(h.len), h.dst), (4, INIT_LEN, None));
    }
    // B on its active path (isp "ac", reference 1), C on its only direct one, never via B.
    let mut on: Vec<u32> = hs.iter().map(|h| h.path).collect();
    on.sort_unstable();
    assert_eq!(on, vec![1, 1 << 16]);
    // After an attach, no initiation before a report (paths are already known here) or the
    // inventory wait.
    d.attached(SEC);
    assert!(drain(&mut d, SEC + INVENTORY_WAIT - 1).is_empty());
    assert_eq!(handshakes(&drain(&mut d, SEC + INVENTORY_WAIT)).len(), 2);
    d.attached(2 * SEC);
    assert!(drain(&mut d, 2 * SEC).is_empty());
    d.on_telemetry(0, &paths(1), 2 * SEC + MS);
    assert_eq!(handshakes(&drain(&mut d, 2 * SEC + MS)).len(), 2);
}

#[test]
fn retries_rotate_over_the_direct_paths_and_prefer_the_failover_choice() {
    let mut d = driver();
    d.set_active_path(0, Some(0));
    d.on_telemetry(0, &paths(1), 0);
    d.on_telemetry(0, &keys(&[]), 0);
    let mut to_b = Vec::new();
    let mut t = 0;
    while to_b.len() < 4 {
        for h in handshakes(&drain(&mut d, t)) {
            if h.path >> 16 == 0 {
                to_b.push(h.path);
            }
        }
        t = d.poll_timeout().unwrap();
    }
    assert_eq!(to_b, vec![0, 1, 0, 1]);
}

#[test]
fn answers_go_back_where_the_message_came_from() {
    let mut d = driver();
    d.on_telemetry(0, &paths(0), 0);
    // An initiation from B (secret 2) to A arrives on uplink 1 from a NATed address.
    let mut b = endpoint_b();
    b.handle_timeout(0);
    let init = std::iter::from_fn(|| b.poll_output())
        .find_map(|(_, o)| match o {
            Output::Initiation(m) => Some(m),
            _ => None,
        })
        .unwrap();
    let mut bytes = [0u8; HANDSHAKE_MAX];
    bytes[..init.len()].copy_from_slice(init.as_bytes());
    let src: IpAddr = "203.0.113.77".parse().unwrap();
    let h = HandshakeIn {
        port: 1,
        src,
        src_port: 40000,
        msg_type: 4,
        len: u16::try_from(init.len()).unwrap(),
        bytes,
    };
    d.on_telemetry(0, &Telemetry::Handshake(h), MS);
    let cmds: Vec<Command> = std::iter::from_fn(|| d.cmds.pop_front()).collect();
    // The key first (for every worker), then the response on B's path on uplink 1.
    assert!(matches!(cmds[0], Command::InstallKey(k) if k.peer == 0 && !k.initiator));
    assert!(is_broadcast(&cmds[0]));
    let Command::SendHandshake(r) = cmds[1] else {
        panic!("{cmds:?}")
    };
    assert_eq!(
        (r.path, r.dst, r.msg_type, r.len),
        (1, Some((src, 40000)), 5, 92)
    );
    // Telemetry that disagrees with itself is counted.
    let mut bad = h;
    bad.msg_type = 5;
    d.on_telemetry(0, &Telemetry::Handshake(bad), 2 * MS);
    let mut long = h;
    long.len = 201;
    d.on_telemetry(0, &Telemetry::Handshake(long), 2 * MS);
    assert_eq!(d.stats().bad_telemetry, 2);
    // A key report naming a peer we do not have, or an index of another peer's slot.
    d.on_telemetry(
        0,
        &keys(&[
            KeyUsage {
                local_index: 9 * 4,
                peer: 9,
                ..KeyUsage::default()
            },
            KeyUsage {
                local_index: 4,
                peer: 0,
                ..KeyUsage::default()
            },
        ]),
        3 * MS,
    );
    assert_eq!(d.stats().bad_key_reports, 2);
}

#[test]
fn requeued_commands_go_out_first() {
    let mut d = driver();
    d.on_telemetry(0, &paths(0), 0);
    d.on_telemetry(0, &keys(&[]), 0);
    let first = d.poll(0).unwrap();
    d.requeue(first);
    assert_eq!(d.poll(0), Some(first));
}

#[test]
fn a_destinations_paths_are_candidates_once_all_can_be_sealed_or_after_the_grace() {
    let mut d = driver();
    let Telemetry::Paths { items, .. } = paths(0) else {
        unreachable!()
    };
    let (to_b, to_c, c_via_b) = (items[0], items[2], items[3]);
    d.on_telemetry(0, &paths(0), 0);
    d.on_telemetry(0, &keys(&[]), 0);
    let init_b = handshakes(&drain(&mut d, MS))
        .into_iter()
        .find(|h| h.path >> 16 == 0)
        .unwrap();
    // No session yet: none is a candidate.
    for p in [to_b, to_c, c_via_b] {
        assert!(!d.path_sealable(&p, MS), "{p:?}");
    }
    assert_eq!(d.newly_sealable(MS), 0, "no peer has a session yet");
    // B (secret 2) answers A's initiation: A's key with B is current.
    let mut b = endpoint_b();
    let src = Source {
        addr: "198.18.0.1".parse().unwrap(),
        port: 6081,
    };
    let (resp, _) = b
        .on_message(&init_b.bytes[..usize::from(init_b.len)], src, 2 * MS)
        .unwrap();
    let mut bytes = [0u8; HANDSHAKE_MAX];
    bytes[..resp.len()].copy_from_slice(resp.as_bytes());
    d.on_telemetry(
        0,
        &Telemetry::Handshake(HandshakeIn {
            port: 0,
            src: "198.18.0.2".parse().unwrap(),
            src_port: 6081,
            msg_type: 5,
            len: u16::try_from(resp.len()).unwrap(),
            bytes,
        }),
        3 * MS,
    );
    // A's first session with B: the planner settles on it, once.
    assert_eq!(d.newly_sealable(3 * MS), 1);
    assert_eq!(d.newly_sealable(4 * MS), 0);
    // B's paths may carry probes; C's go together, and its direct one cannot yet.
    assert!(d.path_sealable(&to_b, 3 * MS));
    assert!(!d.path_sealable(&c_via_b, 3 * MS));
    assert!(!d.path_sealable(&to_c, 3 * MS));
    // After the grace every path is a candidate (its refused probes then count).
    assert!(d.path_sealable(&to_c, PATH_KEY_GRACE));
    // An attach starts the grace again.
    d.attached(10 * SEC);
    assert!(!d.path_sealable(&to_c, 10 * SEC + MS));
    // Off: every path, always.
    let off =
        SecureDriver::<SeededEntropy>::off(&Config::from_toml_str(SITE_A, "site-a.toml").unwrap());
    assert!(off.path_sealable(&to_c, 0));
    let mut off = off;
    assert_eq!(off.newly_sealable(0), 0);
}

#[test]
fn keys_kept_by_the_dataplane_make_paths_candidates_after_a_restart() {
    let Telemetry::Paths { items, .. } = paths(0) else {
        unreachable!()
    };
    let (to_b, to_c, c_via_b) = (items[0], items[2], items[3]);
    let usage = |local_index, peer, last_rx_ns| KeyUsage {
        local_index,
        peer,
        sent: 10,
        received: 10,
        last_rx_ns,
        confirmed: true,
    };
    let now = 20 * SEC;
    // A restarted control: the dataplane reports keys with B (opened a packet 50 ms ago) and
    // with C (never opened one: the peer may not hold it).
    let mut d = driver();
    d.attached(now);
    d.on_telemetry(0, &paths(0), now);
    d.on_telemetry(0, &keys(&[usage(1, 0, now - 50 * MS), usage(5, 1, 0)]), now);
    assert!(d.path_sealable(&to_b, now));
    assert!(!d.path_sealable(&to_c, now));
    assert!(!d.path_sealable(&c_via_b, now));
    // With C's key in use too, every path is a candidate at once.
    let mut d = driver();
    d.attached(now);
    d.on_telemetry(0, &paths(0), now);
    d.on_telemetry(
        0,
        &keys(&[usage(1, 0, now - 50 * MS), usage(5, 1, now - MS)]),
        now,
    );
    for p in [to_b, to_c, c_via_b] {
        assert!(d.path_sealable(&p, now), "{p:?}");
    }
    // A key that has opened nothing for a grace's time does not count.
    let mut d = driver();
    d.attached(now);
    d.on_telemetry(0, &paths(0), now);
    d.on_telemetry(
        0,
        &keys(&[usage(1, 0, now - PATH_KEY_GRACE), usage(5, 1, now - MS)]),
        now,
    );
    assert!(!d.path_sealable(&to_b, now));
    // C's paths wait for B's too (C via B).
    assert!(!d.path_sealable(&to_c, now));
}
