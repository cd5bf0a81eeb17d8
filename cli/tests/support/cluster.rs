//! Real processes for the cluster tests and the cluster benchmark: a NATS
//! server with JetStream on a free loopback port (its store in a temp
//! dir) and `fnhost serve --cluster` nodes. Included with `#[path]`,
//! beside `support/listening.rs` as `mod listening`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Admin token the nodes are started with.
pub const TOKEN: &str = "cluster-test-token";
/// Cluster key the nodes are started with.
pub const KEY: &str = "cluster-test-key-0123456789";

fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FNHOST_NATS_SERVER") {
        return p.into();
    }
    for p in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    // On PATH, or the spawn below fails naming it.
    "nats-server".into()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A NATS server with JetStream, killed on drop.
pub struct Nats {
    pub child: Child,
    pub url: String,
    #[allow(
        dead_code,
        reason = "the cluster benchmark includes this file and never restarts NATS"
    )]
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        Nats {
            child: spawn_nats(dir.path(), port),
            url: format!("nats://127.0.0.1:{port}"),
            port,
            _dir: dir,
        }
    }

    /// SIGKILLs the server (its store stays).
    #[allow(
        dead_code,
        reason = "the cluster benchmark includes this file and never restarts NATS"
    )]
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and store.
    #[allow(
        dead_code,
        reason = "the cluster benchmark includes this file and never restarts NATS"
    )]
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn_nats(self._dir.path(), self.port);
    }
}

fn spawn_nats(dir: &Path, port: u16) -> Child {
    let child = Command::new(nats_server_binary())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start nats-server ({e}): install it (`apt-get install nats-server`; `cargo xtask test` does) or set FNHOST_NATS_SERVER"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `fnhost serve --cluster` process, killed on drop.
pub struct Node {
    /// The node name (`--node`).
    pub name: String,
    pub child: Child,
    pub base: String,
}

impl Node {
    pub fn start_with(fnhost: &Path, nats: &Nats, name: &str, config: &Path, cache: &Path) -> Node {
        let mut child = Command::new(fnhost)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--ack-wait",
                "5s",
                "--config",
            ])
            .arg(config)
            .args(["--cluster", &nats.url, "--node", name])
            .env("FNHOST_LOG", "warn")
            .env("FNHOST_ADMIN_TOKEN", TOKEN)
            .env("FNHOST_CLUSTER_KEY", KEY)
            .env("FNHOST_CACHE_DIR", cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let base = super::listening::listening_base(&mut child, &format!("node {name}"));
        Node {
            name: name.into(),
            child,
            base,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
