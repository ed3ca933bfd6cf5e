//! The Docker containers behind `exec`: on a Pod's first exec, one container is started from the
//! Pod's image with its command and args (no network, labelled with this fake's instance id), and
//! every exec into that Pod runs in it, so files written by one exec are there for the next.
//!
//! Containers go when their Pod goes and when the fake stops; a fake killed with SIGKILL leaves
//! them behind, findable by the `slicebed.fake-kube.instance` label. Nothing here runs on the
//! host itself.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tokio::process::Command;
use tokio::sync::Mutex;

pub const INSTANCE_LABEL: &str = "slicebed.fake-kube.instance";

pub struct Docker {
    instance: String,
    /// Pod uid → container name.
    containers: Mutex<HashMap<String, String>>,
    /// Uids of Pods that are gone: no container is started for them any more.
    gone: std::sync::Mutex<HashSet<String>>,
}

/// What to start for a Pod's container.
pub struct Spec {
    pub uid: String,
    pub pod: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// The Pod's `spec.hostname`, if it sets one.
    pub hostname: Option<String>,
}

impl Spec {
    /// What to start for container `c` of `pod`.
    pub fn of(pod: &Value, c: &Value) -> Spec {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        let meta = &pod["metadata"];
        Spec {
            uid: meta["uid"].as_str().unwrap_or("").to_string(),
            pod: format!(
                "{}/{}",
                meta["namespace"].as_str().unwrap_or(""),
                meta["name"].as_str().unwrap_or("")
            ),
            image: c["image"].as_str().unwrap_or("").to_string(),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            hostname: pod["spec"]["hostname"].as_str().map(str::to_string),
        }
    }

    /// The hostname a kubelet gives the Pod: its `spec.hostname` if set, else its name, cut to
    /// 63 characters.
    fn hostname(&self) -> &str {
        let name = match &self.hostname {
            Some(h) => h.as_str(),
            None => self.pod.rsplit('/').next().unwrap_or(""),
        };
        &name[..name.len().min(63)]
    }
}

impl Docker {
    pub fn new() -> Self {
        Docker {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            containers: Mutex::new(HashMap::new()),
            gone: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// The container for this Pod, started now if it has none yet.
    pub async fn container_for(&self, s: &Spec) -> Result<String, String> {
        let mut map = self.containers.lock().await;
        if let Some(c) = map.get(&s.uid) {
            return Ok(c.clone());
        }
        if self.gone.lock().expect("gone lock").contains(&s.uid) {
            return Err(format!("pod {} is gone", s.pod));
        }
        let name = format!(
            "fake-kube-{}-{}",
            &self.instance[..8],
            &s.uid[..8.min(s.uid.len())]
        );
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-d", "--network", "none", "--name", &name])
            .args(["--hostname", s.hostname()])
            .arg("--label")
            .arg(format!("{INSTANCE_LABEL}={}", self.instance))
            .arg("--label")
            .arg(format!("slicebed.fake-kube.pod={}", s.pod));
        let mut rest: Vec<String> = vec![];
        if let Some((entry, more)) = s.command.split_first() {
            cmd.arg("--entrypoint").arg(entry);
            rest.extend(more.iter().cloned());
        }
        rest.extend(s.args.iter().cloned());
        cmd.arg(&s.image).args(&rest);
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("running docker: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "the fake could not start a container for the pod from image {}: {}",
                s.image,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        map.insert(s.uid.clone(), name.clone());
        Ok(name)
    }

    /// Removes the container of a Pod that is gone (in the background).
    pub fn forget(self: &std::sync::Arc<Self>, uid: &str) {
        self.gone.lock().expect("gone lock").insert(uid.to_string());
        let (me, uid) = (self.clone(), uid.to_string());
        tokio::spawn(async move {
            if let Some(name) = me.containers.lock().await.remove(&uid) {
                let _ = Command::new("docker")
                    .args(["rm", "-f", &name])
                    .output()
                    .await;
            }
        });
    }

    /// Starts the container of a Pod that just started running (in the background), so its
    /// command runs and logs from then on, as a kubelet's would.
    pub fn start(self: &std::sync::Arc<Self>, s: Spec) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.container_for(&s).await {
                tracing::warn!(pod = %s.pod, "{e}");
            }
        });
    }

    /// Removes every container this fake started; blocking, for shutdown.
    pub fn remove_all_blocking(&self) {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label={INSTANCE_LABEL}={}", self.instance),
            ])
            .output();
        let Ok(out) = out else { return };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}
