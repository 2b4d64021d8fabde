//! [`EtcdCluster`]: a real etcd cluster on loopback, for `relay demo --ha` and the
//! high-availability tests: three members of the `etcd` binary on `PATH` (Debian's
//! `etcd-server`), free ports, data in a directory the caller owns; members stopped and
//! restarted one by one. Not a simulator: the election runs against real etcd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Member {
    name: String,
    client: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Three etcd members on loopback; stopped when dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial: String,
    token: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdCluster {
    /// Three members with data under `dir`; why not, when there is no `etcd` binary.
    pub fn start(dir: &Path) -> Result<EtcdCluster, String> {
        if Command::new("etcd").arg("--version").output().is_err() {
            return Err("no `etcd` on PATH: install it (Debian and Ubuntu: apt-get install etcd-server etcd-client)".into());
        }
        let members: Vec<Member> = (0..3)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                dir: dir.join(format!("etcd-{i}")),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial,
            token: format!("qss-relay-test-{:08x}", fastrand::u32(..)),
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) {
        let (initial, token) = (self.initial.clone(), self.token.clone());
        let m = &mut self.members[i];
        let log = std::fs::File::create(m.dir.with_extension("log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.dir)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
            ])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", &token])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// `RELAY_HA_ETCD_ENDPOINTS` for a relay: every member.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops member `i` (SIGKILL: as a crashed host).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Waits until a majority of members says it is healthy (asked with `etcdctl`).
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let healthy = self
                .members
                .iter()
                .filter(|m| m.child.is_some())
                .filter(|m| {
                    Command::new("etcdctl")
                        .env("ETCDCTL_API", "3")
                        .args(["--endpoints", &format!("http://127.0.0.1:{}", m.client)])
                        .args(["endpoint", "health", "--command-timeout=1s"])
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
                .count();
            if healthy >= 2 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("etcd not healthy within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}
