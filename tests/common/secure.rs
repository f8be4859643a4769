//! Security for the root network tests that run the triangle with keys and
//! control processes (`tests/hostile.rs`, `tests/secure_wire.rs`): every
//! site gets a key pair and its peers' public keys (through the testbed's
//! [`OverlaySpec::keys`]), and a control process ([`start_control`]) that
//! runs the handshakes. Included with `#[path]` by the tests that use it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mongate_dataplane::app::{GatewayConfig, RunningDataplane, start_gateway};
use mongate_dataplane::bpf::XdpMode;
use mongate_dataplane::config::Config;
use mongate_dataplane::worker::IdlePolicy;
use mongate_testbed::topology::triangle::flow_links;
use mongate_testbed::{Netns, NsChild, OverlaySpec, PlanSpec, SiteKey};

/// A key pair per site, written by `mongate keygen --out FILE` (the
/// private key 0600 in `dir`, the public key on its stdout), for the
/// testbed to put in every site file ([`OverlaySpec::keys`]).
pub fn keys(dir: &Path, sites: &[&str]) -> Vec<SiteKey> {
    sites
        .iter()
        .map(|s| {
            let key = dir.join(format!("site-{s}.key"));
            let out = Command::new(env!("CARGO_BIN_EXE_mongate"))
                .args(["keygen", "--out"])
                .arg(&key)
                .output()
                .expect("mongate keygen");
            assert!(
                out.status.success(),
                "mongate keygen: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            SiteKey {
                site: s.to_string(),
                private_key_file: key,
                public_key: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            }
        })
        .collect()
}

/// The PFO instance of the test's overlay (links at their rates, each
/// class's sessions and `utility(sessions)`, the JSON of its utility, each
/// flow's links), written to `dir` for the control processes.
pub fn instance(
    dir: &Path,
    spec: &OverlaySpec,
    plan: &PlanSpec,
    utility: impl Fn(u32) -> String,
) -> PathBuf {
    let links = r#"[{"id": "A-B", "capacity": 10.0}, {"id": "A-C", "capacity": 10.0}, {"id": "B-C", "capacity": 5.0}]"#;
    let classes: Vec<String> = spec
        .classes
        .iter()
        .map(|c| {
            let n = plan
                .classes
                .iter()
                .find(|(id, _)| *id == c.id)
                .map_or(1, |x| x.1.max(1));
            format!(
                r#"{{"id": "{}", "sessions": {n}, "utility": {}}}"#,
                c.id,
                utility(n)
            )
        })
        .collect();
    let flows: Vec<String> = spec
        .flows
        .iter()
        .map(|f| {
            let l: Vec<String> = flow_links(&f.route)
                .iter()
                .map(|x| format!("\"{x}\""))
                .collect();
            format!(
                r#"{{"id": "{}", "class": "{}", "links": [{}]}}"#,
                f.id,
                f.class,
                l.join(", ")
            )
        })
        .collect();
    let path = dir.join("instance.json");
    let text = format!(
        "{{\"links\": {links}, \"classes\": [{}], \"flows\": [{}]}}\n",
        classes.join(", "),
        flows.join(", ")
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `mongate-control run` for the gateway `name` (its site file
/// `config`) in `ns`, paths left to the dataplane as without security;
/// its output goes to `dir/control-NAME.log`. Needs the workspace's
/// binaries (`cargo build --release --workspace`).
pub fn start_control(
    ns: &Netns,
    dir: &Path,
    config: &Path,
    instance: &Path,
    name: &str,
) -> NsChild {
    let bin = Path::new(env!("CARGO_BIN_EXE_mongate")).with_file_name("mongate-control");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release --workspace",
        bin.display()
    );
    let log = std::fs::File::create(dir.join(format!("control-{name}.log"))).unwrap();
    let mut cmd = Command::new(bin);
    // One plan (made at start): no periodic re-plan moves a flow's rate
    // while a test measures it.
    cmd.args(["run", "--no-paths", "--replan-s", "3600", "--name", name])
        .arg("--config")
        .arg(config)
        .arg("--instance")
        .arg(instance)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log));
    ns.spawn(cmd).unwrap()
}

/// A plan of epoch 1: sessions per class, and per flow its rate (Mbit/s)
/// at weight 1.
pub fn plan_spec(classes: &[(&str, u32)], flows: &[(&str, f64)]) -> PlanSpec {
    PlanSpec {
        epoch: 1,
        classes: classes.iter().map(|(c, n)| ((*c).into(), *n)).collect(),
        flows: flows.iter().map(|(f, r)| ((*f).into(), *r, 1.0)).collect(),
    }
}

/// Site `site`'s configuration from its file's `text` (the text shown on
/// an error).
pub fn parse_site(site: &str, text: &str) -> Config {
    Config::from_toml_str(text, &format!("{site}.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Starts site `site`'s dataplane in its gateway namespace `ns` as instance
/// `name`: native XDP, attached to a control process or not (`control`),
/// flows at their planned rate from the start (steady before a test
/// measures), a short idle sleep. Returns once its worker runs.
#[allow(dead_code)] // not every test binary that includes this file uses it
pub fn start_dataplane(
    ns: &Netns,
    site: &str,
    cfg: Config,
    name: &str,
    control: bool,
) -> RunningDataplane {
    start_dataplane_workers(ns, site, cfg, name, control, 1)
}

/// [`start_dataplane`] with `workers` workers (on as many queues per
/// interface, the first on core 1).
#[allow(dead_code)]
pub fn start_dataplane_workers(
    ns: &Netns,
    site: &str,
    cfg: Config,
    name: &str,
    control: bool,
    workers: usize,
) -> RunningDataplane {
    let mut gc = GatewayConfig::new(cfg);
    gc.name = name.to_string();
    gc.xdp_mode = XdpMode::Native;
    gc.control = control;
    gc.settings.initial_fraction = 1.0;
    gc.idle = IdlePolicy {
        spin: 200,
        sleep_us: 50,
    };
    if workers > 1 {
        gc.workers = workers;
        gc.cores = vec![1, 0];
    }
    ns.run_in(move || start_gateway(&gc))
        .expect("enter gw ns")
        .unwrap_or_else(|e| panic!("gateway {site}: {e:#}"))
}
