//! `mongate keygen` / `mongate pubkey`: the key file is created 0600 and never overwritten,
//! the printed public key is the file's, a file others may read is refused. No network.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

fn mongate(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_mongate"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn keygen_then_pubkey() {
    let d = std::env::temp_dir().join(format!("mongate-keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let k = d.join("site.key");
    let ks = k.to_str().unwrap();
    let (ok, public, _) = mongate(&["keygen", "--out", ks]);
    assert!(ok);
    assert_eq!(public.len(), 44, "{public}");
    assert_eq!(
        std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, again, _) = mongate(&["pubkey", "--key", ks]);
    assert!(ok);
    assert_eq!(again, public);
    // Never over an existing key.
    let (ok, _, err) = mongate(&["keygen", "--out", ks]);
    assert!(!ok && err.contains("exists"), "{err}");
    assert_eq!(mongate(&["pubkey", "--key", ks]).1, public);
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = mongate(&["pubkey", "--key", ks]);
    assert!(!ok && err.contains("chmod 600"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
