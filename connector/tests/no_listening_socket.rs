//! The promise to agent hosts: the connector process opens no listening socket. Checked on the
//! real binary, from the kernel's own socket tables, while it is connected and serving.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use airlock_bridge::testing::TestBridge;

use common::{Visitor, wait_for};

/// Kills the child when the test ends, whether it passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Inodes of the sockets among the open file descriptors of `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the child's fd table")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// `(inode, state)` of every socket in `/proc/<pid>/net/<table>`; state `0A` is LISTEN,
/// `01` ESTABLISHED.
fn socket_table(pid: u32, table: &str) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((fields.get(9)?.parse().ok()?, fields.get(3)?.to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_process_holds_no_listening_socket() {
    let bridge = TestBridge::start().await;
    let key = bridge.connector_key("socket-check").await;
    let child = Command::new(env!("CARGO_BIN_EXE_airlock-connector"))
        // A temporary working directory, so no stray `.env` changes the settings.
        .current_dir(std::env::temp_dir())
        .env("AIRLOCK_BRIDGE_URL", &bridge.url)
        .env("AIRLOCK_CONNECTOR_KEY", &key)
        .env("AIRLOCK_ECHO_DELAY_MS", "0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start airlock-connector");
    let child = Running(child);
    let pid = child.0.id();

    // Serving for real: one visitor message answered through the binary.
    let mut visitor = Visitor::open(&bridge.url).await;
    let sent = visitor.send("c1", "anyone listening?").await;
    let versions = visitor
        .reply_versions(&sent.id, Duration::from_secs(30))
        .await;
    assert_eq!(versions.last().unwrap().text, "anyone listening?");

    // Every sample must be free of listening sockets; sampling until an established connection
    // shows up proves the check looks at the right sockets and cannot pass vacuously.
    wait_for(
        "an established connection of the connector",
        Duration::from_secs(20),
        || async move {
            let ours = socket_inodes(pid);
            let mut established = false;
            for table in ["tcp", "tcp6"] {
                for (inode, state) in socket_table(pid, table) {
                    if ours.contains(&inode) {
                        assert_ne!(
                            state, "0A",
                            "the connector listens on a {table} socket (inode {inode})"
                        );
                        established |= state == "01";
                    }
                }
            }
            for table in ["udp", "udp6"] {
                for (inode, _) in socket_table(pid, table) {
                    assert!(
                        !ours.contains(&inode),
                        "the connector holds a {table} socket (inode {inode})"
                    );
                }
            }
            (!ours.is_empty() && established).then_some(())
        },
    )
    .await;

    drop(child);
    bridge.shutdown().await;
}
