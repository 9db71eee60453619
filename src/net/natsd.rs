//! A local nats-server process for tests and benchmarks: JetStream with
//! `sync_interval: always` in a scratch store, on a port the server picks. It can be killed
//! with SIGKILL and restarted on the same port and store.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The nats-server binary: `$DATAWALL_NATS_SERVER` (scripts/test sets it), the one
/// scripts/deps.sh installs, or one on PATH.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("DATAWALL_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let installed = PathBuf::from("/var/tmp/datawall-tools/bin/nats-server");
    if installed.exists() {
        return installed;
    }
    PathBuf::from("nats-server")
}

/// A nats-server child process (killed when dropped; its scratch folder removed).
pub struct LocalNats {
    child: Child,
    dir: PathBuf,
    pub port: u16,
    _lines: mpsc::Receiver<String>,
}

impl LocalNats {
    /// Start a server in a fresh scratch folder named after `name`; returns once it is ready.
    pub fn start(name: &str) -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("datawall-nats-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let (child, port, lines) = Self::spawn(&dir, None)?;
        Ok(Self {
            child,
            dir,
            port,
            _lines: lines,
        })
    }

    fn spawn(
        dir: &std::path::Path,
        port: Option<u16>,
    ) -> std::io::Result<(Child, u16, mpsc::Receiver<String>)> {
        let listen = match port {
            Some(p) => format!("127.0.0.1:{p}"),
            None => "127.0.0.1:-1".into(),
        };
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: {listen}\nports_file_dir: \"{}\"\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n",
                dir.display(),
                dir.join("js").display()
            ),
        )?;
        let bin = nats_server_binary();
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start {} ({e}): scripts/test and scripts/nats install nats-server 2.15.1",
                        bin.display()
                    ),
                )
            })?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| std::io::Error::other("no stderr pipe"))?;
        // Bounded: past it, lines are dropped (the server never blocks on its stderr).
        let (tx, lines) = mpsc::sync_channel(4_096);
        std::thread::Builder::new()
            .name("nats-server-log".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if tx.try_send(line).is_err() {
                        // Nobody reads (or far behind): keep draining so the server never
                        // blocks.
                        continue;
                    }
                }
            })?;
        match Self::wait_ready(&lines, port) {
            Ok(port) => Ok((child, port, lines)),
            Err(e) => {
                // Never leave a server behind.
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Read the server's log until it is ready; its client port.
    fn wait_ready(lines: &mpsc::Receiver<String>, port: Option<u16>) -> std::io::Result<u16> {
        let mut port_seen = port;
        loop {
            // Each line is waited for: the server prints "Server is ready" when it is.
            let line = lines.recv_timeout(Duration::from_secs(60)).map_err(|_| {
                std::io::Error::other("nats-server did not say it was ready within 60 s")
            })?;
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                port_seen = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
            }
            if line.contains("[FTL]") {
                return Err(std::io::Error::other(format!(
                    "nats-server failed to start: {line}"
                )));
            }
            if line.contains("Server is ready") {
                break;
            }
        }
        // The port comes from the log line (the ports file in the folder, for scripts, is
        // written after the server says it is ready).
        port_seen.ok_or_else(|| std::io::Error::other("nats-server did not name its client port"))
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }

    /// Start again on the same port and store (after [`LocalNats::kill9`]).
    pub fn restart(&mut self) -> std::io::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, _, lines) = Self::spawn(&self.dir, Some(self.port))?;
        self.child = child;
        self._lines = lines;
        Ok(())
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
