//! The simulated kubelet and controllers: a loop that binds unscheduled Pods, walks bound Pods
//! through Pending → ContainerCreating → Running (or a scripted failure), enforces
//! `activeDeadlineSeconds`, finishes graceful deletions and empties terminating Namespaces.
//!
//! It writes only through the store, so watches see every transition it makes; it never writes
//! a Pod whose status did not change.

mod containers;
mod events;
pub mod namespaces;
pub mod scheduler;
pub mod sim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::kinds;
use crate::meta;
use crate::state::Shared;
use crate::store::Store;
use sim::{Behaviour, PodSim, Sim, Stage};

pub async fn run(shared: Arc<Shared>) {
    loop {
        tick(&shared);
        tokio::time::sleep(shared.timings.tick).await;
    }
}

fn tick(shared: &Shared) {
    let mut store = shared.store.lock().expect("store lock");
    let mut sim = shared.sim.lock().expect("sim lock");
    let lines_before: usize = sim.logs.values().map(|b| b.lines.len()).sum();
    namespaces::reconcile(&mut store);
    crate::quota::reconcile(&mut store);
    let pods: Vec<Value> = store.list(kinds::pods(), None).cloned().collect();
    for pod in &pods {
        let key = (
            meta::namespace(pod).to_string(),
            meta::name(pod).to_string(),
        );
        let scripted = shared
            .behaviours
            .lock()
            .expect("behaviours lock")
            .get(&key)
            .copied();
        let behaviour = scripted
            .or_else(|| {
                pod["metadata"]["annotations"][sim::ANNOTATION]
                    .as_str()
                    .and_then(Behaviour::parse)
            })
            .unwrap_or(Behaviour::Run);
        step(&mut store, &mut sim, shared, pod, behaviour);
    }
    let live: Vec<String> = store
        .list(kinds::pods(), None)
        .map(|p| p["metadata"]["uid"].as_str().unwrap_or("").to_string())
        .collect();
    let gone: Vec<String> = sim
        .pods
        .keys()
        .filter(|u| !live.contains(u))
        .cloned()
        .collect();
    for uid in gone {
        if let Some(d) = &shared.docker {
            d.forget(&uid);
        }
        sim.pods.remove(&uid);
        sim.close_logs(&uid);
    }
    let lines_after: usize = sim.logs.values().map(|b| b.lines.len()).sum();
    let closed = sim.logs.values().filter(|b| b.closed).count();
    if lines_after != lines_before || closed > 0 {
        let _ = shared.log_written.send(());
    }
}

/// Writes the Pod's status if it changed; whether it did.
fn put_status(store: &mut Store, pod: &Value, status: Value) -> bool {
    let changed = pod["status"] != status;
    if changed {
        let mut new = pod.clone();
        new["status"] = status;
        store.put(kinds::pods(), meta::namespace(pod), meta::name(pod), new);
    }
    changed
}

fn unschedulable(store: &mut Store, pod: &Value, message: String) {
    let status = json!({
        "phase": "Pending",
        "qosClass": pod["status"]["qosClass"],
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
    });
    if put_status(store, pod, status) {
        events::record(
            store,
            pod,
            true,
            "FailedScheduling",
            message,
            "default-scheduler",
        );
    }
}

fn step(store: &mut Store, sim: &mut Sim, shared: &Shared, pod: &Value, behaviour: Behaviour) {
    let (ns, name) = (
        meta::namespace(pod).to_string(),
        meta::name(pod).to_string(),
    );
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    let t = &shared.timings;
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        let grace = Duration::from_secs(
            pod["metadata"]["deletionGracePeriodSeconds"]
                .as_u64()
                .unwrap_or(0),
        );
        let Some(p) = sim.pods.get_mut(&uid) else {
            store.remove(kinds::pods(), &ns, &name);
            return;
        };
        if !matches!(p.stage, Stage::Done { .. }) {
            let started = match &p.stage {
                Stage::Running { started } => started.clone(),
                _ => String::new(),
            };
            p.stage = Stage::Done {
                terminated: sim::terminated(0, "Completed", &started),
                phase: "Succeeded",
                reason: None,
                message: None,
            };
            p.since = Instant::now();
            let status = sim::status(&pod["spec"], pod, p);
            sim.close_logs(&uid);
            put_status(store, pod, status);
            let names: Vec<&str> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            events::record(
                store,
                pod,
                false,
                "Killing",
                format!("Stopping container {}", names.join(", ")),
                "kubelet",
            );
        } else if p.since.elapsed() >= t.termination.min(grace) {
            store.remove(kinds::pods(), &ns, &name);
        }
        return;
    }
    if node.is_empty() {
        match scheduler::schedule(store, pod) {
            Ok(n) => {
                let mut new = pod.clone();
                new["spec"]["nodeName"] = json!(n);
                new["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True"}]);
                let bound = store.put(kinds::pods(), &ns, &name, new);
                let msg = format!("Successfully assigned {ns}/{name} to {n}");
                events::record(store, &bound, false, "Scheduled", msg, "default-scheduler");
            }
            Err(message) => unschedulable(store, pod, message),
        }
        return;
    }
    let Some(node_obj) = store.get(kinds::nodes(), "", &node).cloned() else {
        if !sim.pods.contains_key(&uid) {
            unschedulable(store, pod, format!("node \"{node}\" not found"));
        }
        return;
    };
    if !scheduler::ready(&node_obj) {
        // The node's kubelet is gone: nothing on it moves until it comes back.
        return;
    }
    if !sim.pods.contains_key(&uid) {
        let host_ip = node_obj["status"]["addresses"][0]["address"]
            .as_str()
            .unwrap_or("")
            .to_string();
        sim.next_ip += 1;
        let pod_ip = format!("10.244.{}.{}", sim.next_ip / 250, sim.next_ip % 250 + 2);
        let now = Instant::now();
        sim.pods.insert(
            uid.clone(),
            PodSim {
                stage: Stage::Creating,
                since: now,
                started: now,
                start_time: meta::now(),
                restarts: 0,
                pod_ip,
                host_ip,
                last_log: now,
                ticks: 0,
            },
        );
    }
    let containers: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect();
    let mut p = sim.pods[&uid].clone();
    let before = p.stage.clone();
    containers::advance(&mut p, sim, pod, &uid, &containers, behaviour, t);
    if let Some(ads) = pod["spec"]["activeDeadlineSeconds"].as_u64() {
        if !matches!(p.stage, Stage::Done { .. }) && p.started.elapsed() >= Duration::from_secs(ads)
        {
            let started = match &p.stage {
                Stage::Running { started } => started.clone(),
                _ => String::new(),
            };
            p.stage = Stage::Done {
                terminated: sim::terminated(137, "Error", &started),
                phase: "Failed",
                reason: Some("DeadlineExceeded"),
                message: Some(
                    "Pod was active on the node longer than the specified deadline".into(),
                ),
            };
            sim.close_logs(&uid);
        }
    }
    if let (Some(d), Stage::Running { .. }) = (&shared.docker, &p.stage) {
        if !matches!(before, Stage::Running { .. }) {
            for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
                d.start(crate::exec::docker::Spec::of(pod, c));
            }
        }
    }
    let status = sim::status(&pod["spec"], pod, &p);
    events::transition(store, pod, &before, &p.stage);
    sim.pods.insert(uid, p);
    put_status(store, pod, status);
}
