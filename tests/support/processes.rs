//! A distributed deployment in separate processes: `ferrisfx server`, gateways and executors
//! started from the built binary, sharing the backends the test command started (Kafka, and
//! PostgreSQL / S3 when their variables are set).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `ferrisfx` CLI with `args` against the management server at `server`, as a tokio
/// command (a test awaiting it never blocks the runtime worker that may be serving the
/// server), with its own config directory `config` (no kept token), `FX_TOKEN` cleared, and
/// killed when dropped.
pub fn cli_command(server: &str, config: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(ferrisfx_binary());
    command
        .args(args)
        .env("FX_SERVER", server)
        .env("FX_CONFIG_DIR", config)
        .env_remove("FX_TOKEN")
        .kill_on_drop(true);
    command
}

/// The `ferrisfx` binary built by the test command (`cargo build --bin ferrisfx`).
pub fn ferrisfx_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = std::env::var("FX_BENCH_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(profile).join("ferrisfx");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bin ferrisfx` (the test command does; add --release with FX_BENCH_PROFILE=release)",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The peak resident memory of process `pid` so far, in KiB (`VmHWM`), while it runs (Linux).
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One process of the deployment.
pub struct Process {
    /// What it runs (`gateway`, `executor`, `server`) and its index.
    pub name: String,
    child: Child,
}

impl Process {
    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its peak resident memory so far, in KiB (`VmHWM`), while it runs (Linux).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib_of(self.child.id())
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it with SIGTERM and waits (graceful shutdown).
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A deployment: a settings file shared by every process, and the processes.
pub struct Deployment {
    /// The settings file.
    pub config: PathBuf,
    /// Base URL of the management server.
    pub base: String,
    /// The data directory (shared by the processes for the file-based backends).
    pub dir: PathBuf,
    logs: PathBuf,
    /// The running processes.
    pub processes: Vec<Process>,
}

impl Deployment {
    /// Writes a settings file with `backends` (a TOML fragment: the `[backends.*]` tables).
    pub fn new(dir: &Path, backends: &str) -> Deployment {
        let port = free_port();
        let config = dir.join("fx.toml");
        let text = format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:{port}\"\nexample = false\n\n{backends}\n\n[executor]\nmax_concurrency = 8\n\n# On loopback, without authentication.\n[server.auth]\nenabled = false\n",
            data = dir.join("data").display().to_string(),
        );
        std::fs::write(&config, text).expect("writing the settings file");
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        Deployment {
            config,
            base: format!("http://127.0.0.1:{port}"),
            dir: dir.to_path_buf(),
            logs,
            processes: Vec::new(),
        }
    }

    /// Starts `ferrisfx <part>` (extra args appended); returns its index.
    pub fn start(&mut self, part: &str, extra: &[&str]) -> usize {
        self.start_with_env(part, extra, &[])
    }

    /// Starts `ferrisfx <part>` with its operations listener (`/healthz`, `/readyz`,
    /// `/metrics`) on a free port; returns its index and the listener's base URL.
    pub fn start_with_ops(&mut self, part: &str, extra: &[&str]) -> (usize, String) {
        let addr = format!("127.0.0.1:{}", free_port());
        let index = self.start_with_env(part, extra, &[("FX_OPS__LISTEN", &addr)]);
        (index, format!("http://{addr}"))
    }

    /// Starts `ferrisfx <part>` with extra environment variables; returns its index.
    pub fn start_with_env(&mut self, part: &str, extra: &[&str], env: &[(&str, &str)]) -> usize {
        let index = self.processes.len();
        let name = format!("{part}-{index}");
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).expect("log file");
        let err = log.try_clone().expect("log file");
        let child = Command::new(ferrisfx_binary())
            .arg(part)
            .arg("--config")
            .arg(&self.config)
            .args(extra)
            .env("FX_LOG", "info")
            // The harness's own variable, not a setting (unknown FX_* keys are refused).
            .env_remove("FX_BENCH_PROFILE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawning ferrisfx");
        self.processes.push(Process { name, child });
        index
    }

    /// The log of process `index`, for failure messages.
    pub fn log_of(&self, index: usize) -> String {
        let name = &self.processes[index].name;
        std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Every process log, concatenated (for assertion messages).
    pub fn all_logs(&self) -> String {
        (0..self.processes.len())
            .map(|i| {
                format!(
                    "---- {} ----\n{}",
                    self.processes[i].name,
                    tail(&self.log_of(i), 40)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until the management server answers `/healthz`.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("management server not ready:\n{}", self.all_logs());
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
