//! What each network driver supports for XDP and AF_XDP.
//!
//! Generic (skb) XDP works on every interface; *native* (driver) XDP and
//! AF_XDP *zero-copy* need driver support. The table below is what upstream
//! Linux drivers support (as of Linux 6.1x); it is a guide, not a guarantee:
//! the dataplane should still try zero-copy and fall back to copy mode if
//! the bind fails.

use serde::{Deserialize, Serialize};

/// XDP attach mode the dataplane should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Driver (native) mode: the program runs in the driver's rx path.
    Native,
    /// Generic (skb) mode: works everywhere, after skb allocation; slower.
    Generic,
}

impl XdpMode {
    /// The `ip link set dev X xdp<mode>` keyword (`xdpdrv` / `xdpgeneric`).
    pub fn ip_link_keyword(self) -> &'static str {
        match self {
            Self::Native => "xdpdrv",
            Self::Generic => "xdpgeneric",
        }
    }
}

/// XDP capabilities of one driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DriverXdp {
    /// Kernel driver name as reported by ETHTOOL_GDRVINFO.
    pub driver: &'static str,
    /// Native (driver-mode) XDP supported.
    pub native: bool,
    /// AF_XDP zero-copy supported.
    pub zero_copy: bool,
    /// Caveats (minimum kernel, device requirements).
    pub note: &'static str,
}

/// Known drivers. Anything not listed is assumed generic-only.
pub const DRIVER_TABLE: &[DriverXdp] = &[
    DriverXdp {
        driver: "veth",
        native: true,
        zero_copy: false,
        note: "native XDP on the receiving side; the peer needs an XDP program (or GRO) for redirected frames; copy-mode AF_XDP only",
    },
    DriverXdp {
        driver: "virtio_net",
        native: true,
        zero_copy: true,
        note: "zero-copy since Linux 6.11 and only if the device offers VIRTIO_F_RING_RESET; native XDP needs enough queues (combined >= 2x cpus for XDP_TX) or it shares queues",
    },
    DriverXdp {
        driver: "ixgbe",
        native: true,
        zero_copy: true,
        note: "",
    },
    DriverXdp {
        driver: "ixgbevf",
        native: true,
        zero_copy: false,
        note: "",
    },
    DriverXdp {
        driver: "i40e",
        native: true,
        zero_copy: true,
        note: "",
    },
    DriverXdp {
        driver: "ice",
        native: true,
        zero_copy: true,
        note: "",
    },
    DriverXdp {
        driver: "igb",
        native: true,
        zero_copy: true,
        note: "native since 5.10; zero-copy since Linux 6.14",
    },
    DriverXdp {
        driver: "igc",
        native: true,
        zero_copy: true,
        note: "",
    },
    DriverXdp {
        driver: "mlx5_core",
        native: true,
        zero_copy: true,
        note: "zero-copy queues are numbered after the regular channels on older kernels; check the driver docs",
    },
    DriverXdp {
        driver: "mlx4_en",
        native: true,
        zero_copy: false,
        note: "",
    },
    DriverXdp {
        driver: "bnxt_en",
        native: true,
        zero_copy: false,
        note: "",
    },
    DriverXdp {
        driver: "ena",
        native: true,
        zero_copy: false,
        note: "upstream driver: copy-mode AF_XDP; MTU limited with XDP",
    },
    DriverXdp {
        driver: "gve",
        native: true,
        zero_copy: true,
        note: "",
    },
    DriverXdp {
        driver: "nfp",
        native: true,
        zero_copy: true,
        note: "also supports XDP offload",
    },
    DriverXdp {
        driver: "qede",
        native: true,
        zero_copy: false,
        note: "",
    },
    DriverXdp {
        driver: "sfc",
        native: true,
        zero_copy: false,
        note: "",
    },
    DriverXdp {
        driver: "hv_netvsc",
        native: true,
        zero_copy: false,
        note: "",
    },
    DriverXdp {
        driver: "stmmac",
        native: true,
        zero_copy: true,
        note: "",
    },
    DriverXdp {
        driver: "tun",
        native: true,
        zero_copy: false,
        note: "",
    },
    DriverXdp {
        driver: "bonding",
        native: true,
        zero_copy: false,
        note: "native only if every slave supports it",
    },
];

/// Looks up a driver; `None` means "not in the table: assume generic only".
pub fn driver_xdp(driver: &str) -> Option<&'static DriverXdp> {
    DRIVER_TABLE.iter().find(|d| d.driver == driver)
}

/// Best mode for a driver: native if the table lists it, generic otherwise.
pub fn best_mode(driver: Option<&str>) -> XdpMode {
    match driver.and_then(driver_xdp) {
        Some(d) if d.native => XdpMode::Native,
        _ => XdpMode::Generic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lookups() {
        assert_eq!(best_mode(Some("ixgbe")), XdpMode::Native);
        assert_eq!(best_mode(Some("dummy")), XdpMode::Generic);
        assert_eq!(best_mode(None), XdpMode::Generic);
        assert!(driver_xdp("ice").unwrap().zero_copy);
        assert!(!driver_xdp("veth").unwrap().zero_copy);
        // no duplicates
        for (i, a) in DRIVER_TABLE.iter().enumerate() {
            assert!(
                DRIVER_TABLE[i + 1..].iter().all(|b| b.driver != a.driver),
                "{}",
                a.driver
            );
        }
    }
}
