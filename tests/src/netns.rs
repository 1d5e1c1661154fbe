//! Runs browser tests inside a private network namespace.
//!
//! Why: headless Chromium only gathers WebRTC ICE host candidates on a
//! non-loopback interface, and a build machine may have no such interface
//! (or one we must not depend on). A fresh namespace with a veth pair gives
//! Chromium one (`veth0`, 192.0.2.2/24 from TEST-NET-1, default route), while
//! nothing can leave it: broker, chromedriver and every Chromium are started
//! inside and talk over 127.0.0.1 there. It also isolates concurrent runs.
//!
//! The namespace also gets its own pid (and, for a matching `/proc`, mount)
//! namespace, with the test process as its pid 1: when the test ends, even by
//! a panic that skips every `Drop`, the kernel kills every process it
//! started, so no orphaned Chromium survives a run.
//!
//! Usage: the first line of a browser test is
//! `if !tests::netns::enter_or_reexec("<test fn name>") { return; }`.

use std::ffi::OsString;
use std::process::Command;

/// Set (to `1`) inside the namespace. Set it by hand to run in the current
/// network instead, if that already has a non-loopback interface.
pub const ENV: &str = "P2P_IN_NETNS";

/// Shell run as root inside the new namespace before `exec "$@"`.
const SETUP: &str = "set -e
PATH=\"$PATH:/usr/sbin:/sbin\"
ip link set lo up
ip link add veth0 type veth peer name veth1
# No IPv6 link-local addresses: the kernel would add them ~2 s after the
# links come up, which Chromium takes for a network change, failing
# connections in flight (ERR_NETWORK_CHANGED, seen on TLS handshakes).
ip link set veth0 addrgenmode none 2>/dev/null || true
ip link set veth1 addrgenmode none 2>/dev/null || true
ip addr add 192.0.2.2/24 dev veth0
ip link set veth0 up
ip link set veth1 up
ip route add default dev veth0
if [ -n \"$P2P_MERGE_STDERR\" ]; then exec \"$@\" 2>&1; else exec \"$@\"; fi";

/// Whether this process runs inside the test namespace.
pub fn inside() -> bool {
    std::env::var_os(ENV).is_some()
}

fn unshare(args: impl IntoIterator<Item = OsString>, merge_stderr: bool) -> Command {
    let exe = std::env::current_exe().expect("cannot find the current executable");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--",
        "sh",
        "-c",
        SETUP,
        "p2p-netns",
    ])
    .arg(exe)
    .args(args)
    .env(ENV, "1");
    if merge_stderr {
        cmd.env("P2P_MERGE_STDERR", "1");
    }
    cmd
}

const HINT: &str = "creating the test namespace needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), \
    util-linux `unshare` and iproute2 `ip`; or set P2P_IN_NETNS=1 to run in the current network";

/// For a test function named `test_name`: inside the namespace, returns
/// `true` and the test should proceed. Outside, re-runs this test binary
/// with `--exact <test_name>` in a fresh namespace, replays its output, and
/// returns `false` if it passed (the caller then returns) or panics if not.
pub fn enter_or_reexec(test_name: &str) -> bool {
    if inside() {
        return true;
    }
    let args = ["--exact", test_name, "--nocapture", "--test-threads=1"].map(OsString::from);
    // stderr into stdout, so broker logs and test output keep their order.
    let out = unshare(args, true)
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare: {e}; {HINT}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "`{test_name}` failed inside the network namespace ({}); its output is above. If it \
         failed before the test started: {HINT}",
        out.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "re-running this binary with `--exact {test_name}` did not run exactly one test: the \
         name passed to enter_or_reexec must be the test function's full name"
    );
    false
}

/// For a binary: inside the namespace, returns. Outside, re-runs the current
/// executable with the same arguments in a fresh namespace (stdio inherited)
/// and exits with its status.
pub fn reexec_self() {
    if inside() {
        return;
    }
    let status = unshare(std::env::args_os().skip(1), false)
        .status()
        .unwrap_or_else(|e| panic!("cannot run unshare: {e}; {HINT}"));
    if !status.success() {
        eprintln!("run in the network namespace failed ({status}); {HINT}");
    }
    std::process::exit(status.code().unwrap_or(1));
}
