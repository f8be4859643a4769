//! Host-wide facts: CPUs, isolation, NUMA, hugepages, irqbalance.

use serde::{Deserialize, Serialize};

use super::{Roots, read_opt};
use crate::parse::{parse_cpulist, parse_hugepage_dir_name, parse_u64};

/// One NUMA node and its CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    /// Node id.
    pub id: u32,
    /// CPUs of the node.
    pub cpus: Vec<u32>,
}

/// One hugepage size pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hugepages {
    /// Page size in KiB (2048, 1048576).
    pub size_kb: u64,
    /// Pages reserved (`nr_hugepages`).
    pub total: u64,
    /// Pages not in use (`free_hugepages`).
    pub free: u64,
}

/// Host facts relevant to a dataplane deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Kernel release.
    pub kernel: String,
    /// Online CPUs.
    pub online_cpus: Vec<u32>,
    /// CPUs removed from the scheduler (`isolcpus=`).
    pub isolated: Vec<u32>,
    /// CPUs without the periodic tick (`nohz_full=`).
    pub nohz_full: Vec<u32>,
    /// NUMA nodes (one node 0 with every CPU if sysfs has none).
    pub numa_nodes: Vec<NumaNode>,
    /// Hugepage pools, smallest size first.
    pub hugepages: Vec<Hugepages>,
    /// An `irqbalance` process is running (it would undo IRQ pinning).
    pub irqbalance_running: bool,
}

impl HostInfo {
    /// NUMA node of a CPU.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.numa_nodes
            .iter()
            .find(|n| n.cpus.contains(&cpu))
            .map(|n| n.id)
    }
}

fn cpulist_at(roots: &Roots, rel: &str) -> Vec<u32> {
    read_opt(&roots.sys.join(rel))
        .filter(|t| t.trim() != "(null)")
        .and_then(|t| parse_cpulist(&t).ok())
        .unwrap_or_default()
}

/// Reads host facts; missing files become empty values, never errors.
pub fn discover_host(roots: &Roots) -> HostInfo {
    let online_cpus = cpulist_at(roots, "devices/system/cpu/online");
    let mut numa_nodes: Vec<NumaNode> = cpulist_at(roots, "devices/system/node/online")
        .into_iter()
        .map(|id| NumaNode {
            id,
            cpus: cpulist_at(roots, &format!("devices/system/node/node{id}/cpulist")),
        })
        .collect();
    if numa_nodes.is_empty() {
        numa_nodes.push(NumaNode {
            id: 0,
            cpus: online_cpus.clone(),
        });
    }
    let mut hugepages: Vec<Hugepages> = std::fs::read_dir(roots.sys.join("kernel/mm/hugepages"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let size_kb = parse_hugepage_dir_name(e.file_name().to_str()?)?;
                    let num = |f: &str| {
                        read_opt(&e.path().join(f))
                            .and_then(|t| parse_u64(&t).ok())
                            .unwrap_or(0)
                    };
                    Some(Hugepages {
                        size_kb,
                        total: num("nr_hugepages"),
                        free: num("free_hugepages"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    hugepages.sort_by_key(|h| h.size_kb);
    HostInfo {
        kernel: read_opt(&roots.proc.join("sys/kernel/osrelease"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        online_cpus,
        isolated: cpulist_at(roots, "devices/system/cpu/isolated"),
        nohz_full: cpulist_at(roots, "devices/system/cpu/nohz_full"),
        numa_nodes,
        hugepages,
        irqbalance_running: irqbalance_running(roots),
    }
}

/// Scans `/proc/<pid>/comm` for `irqbalance` (bounded by the process count).
fn irqbalance_running(roots: &Roots) -> bool {
    let Ok(rd) = std::fs::read_dir(&roots.proc) else {
        return false;
    };
    rd.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|e| read_opt(&e.path().join("comm")).is_some_and(|c| c.trim() == "irqbalance"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_fake_host() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let w = |rel: &str, text: &str| {
            let p = r.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        w("sys/devices/system/cpu/online", "0-7\n");
        w("sys/devices/system/cpu/isolated", "2-3,6-7\n");
        w("sys/devices/system/cpu/nohz_full", "(null)\n");
        w("sys/devices/system/node/online", "0-1\n");
        w("sys/devices/system/node/node0/cpulist", "0-3\n");
        w("sys/devices/system/node/node1/cpulist", "4-7\n");
        w(
            "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            "512\n",
        );
        w(
            "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages",
            "500\n",
        );
        w(
            "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
            "0\n",
        );
        w(
            "sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages",
            "0\n",
        );
        w("proc/sys/kernel/osrelease", "6.18.0\n");
        w("proc/123/comm", "irqbalance\n");
        w("proc/124/comm", "bash\n");
        let roots = Roots {
            sys: r.join("sys"),
            proc: r.join("proc"),
            use_ethtool: false,
        };
        let h = discover_host(&roots);
        assert_eq!(h.kernel, "6.18.0");
        assert_eq!(h.online_cpus, (0..8).collect::<Vec<_>>());
        assert_eq!(h.isolated, vec![2, 3, 6, 7]);
        assert!(h.nohz_full.is_empty());
        assert_eq!(h.numa_nodes.len(), 2);
        assert_eq!(h.node_of_cpu(5), Some(1));
        assert_eq!(
            h.hugepages,
            vec![
                Hugepages {
                    size_kb: 2048,
                    total: 512,
                    free: 500
                },
                Hugepages {
                    size_kb: 1_048_576,
                    total: 0,
                    free: 0
                },
            ]
        );
        assert!(h.irqbalance_running);
    }

    #[test]
    fn empty_tree_gives_empty_host() {
        let t = tempfile::tempdir().unwrap();
        let roots = Roots {
            sys: t.path().join("sys"),
            proc: t.path().join("proc"),
            use_ethtool: false,
        };
        let h = discover_host(&roots);
        assert!(h.online_cpus.is_empty());
        assert_eq!(h.numa_nodes.len(), 1);
        assert!(!h.irqbalance_running);
    }
}
