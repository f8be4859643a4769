//! `mongate-dataplane`: runs pinned per-core workers.
//!
//! `forward` is the engine's baseline pipeline (IP forwarding between two
//! interfaces, or a UDP relay on io_uring); `stats` prints the shared-memory
//! counters of a running instance.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};
use mongate_dataplane::afxdp::{AfXdpConfig, AfXdpPort, BindMode};
use mongate_dataplane::bpf::{XdpAttachment, XdpFilter, XdpMode};
use mongate_dataplane::engine::{Arena, FramePool, Port};
use mongate_dataplane::forward::{ForwardRule, L3Forward};
use mongate_dataplane::stats::{StatsRegion, stats_path};
use mongate_dataplane::worker::{IdlePolicy, Worker, pin_to_core};

#[derive(Parser)]
#[command(name = "mongate-dataplane", version, about = "mongate dataplane: pinned per-core AF_XDP / io_uring workers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Forward IP packets from one interface to another through AF_XDP workers.
    Forward(ForwardArgs),
    /// Print the counters of a running instance as JSON.
    Stats {
        /// Instance name (`--name` of the running dataplane).
        #[arg(long, default_value = "dataplane")]
        name: String,
    },
}

#[derive(Parser)]
struct ForwardArgs {
    /// Ingress interface.
    #[arg(long = "in")]
    input: String,
    /// Egress interface.
    #[arg(long = "out")]
    output: String,
    /// Number of queues (one worker per queue, queues 0..N).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Cores to pin workers to, cycled (e.g. `1` or `1,2`). Default: no pinning.
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// XDP attach mode: native, generic or auto.
    #[arg(long, default_value = "auto")]
    xdp_mode: XdpMode,
    /// AF_XDP binding: copy, zero-copy or auto.
    #[arg(long, default_value = "auto", value_parser = parse_bind)]
    bind: BindMode,
    /// MAC address of the next hop on the egress interface.
    #[arg(long, value_parser = parse_mac)]
    next_hop_mac: [u8; 6],
    /// Also forward egress -> ingress, to this MAC on the ingress side.
    #[arg(long, value_parser = parse_mac)]
    reverse_next_hop_mac: Option<[u8; 6]>,
    /// Largest IP packet forwarded (bytes).
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Frames per worker (UMEM size = frames x 2048 bytes).
    #[arg(long, default_value_t = 16384)]
    frames: u32,
    /// Instance name: counters in /dev/shm/mongate-NAME.stats.
    #[arg(long, default_value = "dataplane")]
    name: String,
    /// Busy-poll iterations before yielding when idle.
    #[arg(long, default_value_t = 2000)]
    spin: u32,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration_s: Option<f64>,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC address {s:?}: expected six hex bytes like 02:00:00:00:00:01"));
    }
    let mut m = [0u8; 6];
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC address {s:?}: {p:?} is not a hex byte"))?;
    }
    Ok(m)
}

fn parse_bind(s: &str) -> Result<BindMode, String> {
    match s {
        "copy" => Ok(BindMode::Copy),
        "zero-copy" | "zerocopy" => Ok(BindMode::ZeroCopy),
        "auto" => Ok(BindMode::Auto),
        _ => Err(format!("unknown bind mode {s:?}: use copy, zero-copy or auto")),
    }
}

fn iface_mac(ifname: &str) -> anyhow::Result<[u8; 6]> {
    let path = format!("/sys/class/net/{ifname}/address");
    let text = std::fs::read_to_string(&path).map_err(|_| anyhow::anyhow!("{ifname}: no such interface (see `ip link`)"))?;
    parse_mac(text.trim()).map_err(|e| anyhow::anyhow!("{ifname}: {e}"))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signals() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing an async-signal-safe handler (one atomic store).
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

fn forward(a: ForwardArgs) -> anyhow::Result<()> {
    if a.queues == 0 || a.queues > 64 {
        anyhow::bail!("--queues must be 1..=64");
    }
    let in_mac = iface_mac(&a.input)?;
    let out_mac = iface_mac(&a.output)?;
    let xdp_in = XdpAttachment::attach(&a.input, &XdpFilter::lan(&[], &[]), a.queues, a.xdp_mode)?;
    let xdp_out = match a.reverse_next_hop_mac {
        Some(_) => Some(XdpAttachment::attach(&a.output, &XdpFilter::lan(&[], &[]), a.queues, a.xdp_mode)?),
        None => None,
    };
    let stats = Arc::new(StatsRegion::create(&stats_path(&a.name), usize::try_from(a.queues)?)?);
    let mut threads = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut names = Vec::new();
    for q in 0..a.queues {
        let arena = Arena::new(a.frames, 2048, 256, true)?;
        let mut pool = FramePool::new(&arena);
        let mut cfg_in = AfXdpConfig::new(&a.input, q);
        cfg_in.bind = a.bind;
        let mut cfg_out = AfXdpConfig::new(&a.output, q);
        cfg_out.bind = a.bind;
        let p_in = AfXdpPort::open(&cfg_in, 0, &arena, None, Some(&xdp_in))?;
        let mut p_out = AfXdpPort::open(&cfg_out, 1, &arena, Some(&p_in), xdp_out.as_ref())?;
        // A transmit-only port keeps no receive buffers.
        if xdp_out.is_none() {
            p_out.set_fill_target(0);
        }
        let mut p_in = p_in;
        p_in.set_fill_target((a.frames / 2).min(4096));
        names.push(p_in.name().to_string());
        names.push(p_out.name().to_string());
        let mut stage = L3Forward::new(a.mtu).with_rule(0, ForwardRule { out_port: 1, src_mac: out_mac, dst_mac: a.next_hop_mac });
        if let Some(rev) = a.reverse_next_hop_mac {
            stage = stage.with_rule(1, ForwardRule { out_port: 0, src_mac: in_mac, dst_mac: rev });
        }
        // Hand the kernel its receive buffers before traffic starts.
        p_in.maintain(&mut pool);
        let ports: Vec<Box<dyn Port + Send>> = vec![Box::new(p_in), Box::new(p_out)];
        let mut w = Worker::new(arena, pool, ports, stage, IdlePolicy { spin: a.spin, sleep_us: 0 });
        let core = (!a.cores.is_empty()).then(|| a.cores[usize::try_from(q).unwrap_or(0) % a.cores.len()]);
        let stop = stop.clone();
        let stats = stats.clone();
        threads.push(std::thread::Builder::new().name(format!("mg-worker-{q}")).spawn(move || {
            if let Some(c) = core {
                if !pin_to_core(c) {
                    eprintln!("warning: worker {q}: could not pin to core {c}");
                }
            }
            w.run(&stop, stats.worker(usize::try_from(q).unwrap_or(0)));
        })?);
    }
    println!("ready: {} workers, xdp {:?}; ports: {}", a.queues, xdp_in.mode(), names.join(", "));
    install_signals();
    let deadline = a.duration_s.map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s.max(0.0)));
    while !STOP.load(Ordering::Relaxed) && deadline.is_none_or(|d| std::time::Instant::now() < d) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let snap = stats.snapshot();
    println!("{}", serde_json::to_string(&snap)?);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Forward(a) => forward(a),
        Cmd::Stats { name } => StatsRegion::open(&stats_path(&name))
            .map_err(anyhow::Error::from)
            .and_then(|s| Ok(println!("{}", serde_json::to_string_pretty(&s.snapshot())?))),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mongate-dataplane: {e}");
            ExitCode::FAILURE
        }
    }
}
