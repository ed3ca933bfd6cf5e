//! One control connection: `Hello` with what the engine shows, wait for `Welcome`, then relay
//! desired-state messages to the worker and reports and heartbeats to the service until the
//! stream breaks or the agent shuts down.

use std::future::Future;
use std::time::{Duration, SystemTime};

use slicebed_proto::v1 as pb;
use slicebed_proto::v1::{node_message, service_message};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, timeout, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

use super::worker::{self, Command};
use super::{AbortOnDrop, AgentConfig};
use crate::access::{Access, Launcher};
use crate::backoff::Backoff;
use crate::connect::{channel, identified_client};
use crate::convert::{engine_status, spec_from, status_from};
use crate::domain::{ReportedState, SliverReport};
use crate::error::{Error, Result};
use crate::reconciler::{Reconciler, Usage};
use crate::runtime::Runtime;
use crate::usage::Samples;

/// How long the service may take to answer `Hello` with `Welcome`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);
/// Heartbeat interval when the service names none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// How long a graceful close waits for the service to end its side.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for a renewed certificate before asking again.
const RENEW_RETRY: Duration = Duration::from_secs(60);

/// Asks for a new certificate if the current one is past 2/3 of its life and no request is
/// outstanding (or the last one went unanswered for a while). The identity store remembers
/// the request, so a cluster agent's many member sessions ask once between them.
async fn maybe_renew(cfg: &AgentConfig, out: &mpsc::Sender<pb::NodeMessage>) -> Result<()> {
    let id = cfg.identity.get();
    if !id.renewal_due(SystemTime::now()) || !cfg.identity.claim_renewal(RENEW_RETRY) {
        return Ok(());
    }
    let csr_pem = crate::identity::csr(&id.key_pem, &cfg.node.node)?;
    tracing::info!("client certificate due for renewal; asking the service");
    let m = pb::NodeMessage {
        msg: Some(node_message::Msg::Renew(pb::RenewCertificate { csr_pem })),
    };
    out.send(m).await.map_err(|_| closed())
}

/// `Some(value)` unless shutdown came first.
async fn unless<T>(f: impl Future<Output = T>, shutdown: impl Future<Output = ()>) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown => None,
        v = f => Some(v),
    }
}

fn invalid(sliver_id: String, message: String) -> pb::NodeMessage {
    let report = SliverReport {
        sliver_id,
        state: ReportedState::Failed,
        message,
        exit_code: None,
        container_id: String::new(),
        restarts: 0,
    };
    pb::NodeMessage {
        msg: Some(node_message::Msg::Status(status_from(report))),
    }
}

/// Translates one service message into worker commands (and FAILED reports for invalid specs).
async fn dispatch<R: Runtime + Clone>(
    msg: pb::ServiceMessage,
    commands: &mpsc::Sender<Command>,
    out: &mpsc::Sender<pb::NodeMessage>,
    sessions: &Launcher<R>,
    member: Option<&super::MemberLink>,
) -> Result<()> {
    let command = match msg.msg {
        Some(service_message::Msg::Desired(set)) => {
            let mut specs = Vec::with_capacity(set.slivers.len());
            for d in set.slivers {
                let id = d.sliver_id.clone();
                match spec_from(d) {
                    Ok(s) => specs.push(s),
                    Err(e) => out.send(invalid(id, e)).await.map_err(|_| closed())?,
                }
            }
            Command::Desired(specs)
        }
        Some(service_message::Msg::Upsert(d)) => {
            let id = d.sliver_id.clone();
            match spec_from(d) {
                Ok(s) => Command::Upsert(Box::new(s)),
                Err(e) => return out.send(invalid(id, e)).await.map_err(|_| closed()),
            }
        }
        Some(service_message::Msg::Remove(id)) => Command::Remove(id),
        // Served in a task of its own: a session never holds up the control loop.
        Some(service_message::Msg::OpenSession(open)) => {
            sessions.spawn(open);
            return Ok(());
        }
        Some(service_message::Msg::Admin(a)) => {
            // Only a cluster member has a Kubernetes node to cordon; a plain node's state is
            // the service's alone.
            if let Some(m) = member {
                let _ = m.cordon.send(a.cordon);
            }
            return Ok(());
        }
        Some(service_message::Msg::Welcome(_) | service_message::Msg::Certificate(_)) | None => {
            return Ok(())
        }
    };
    commands
        .send(command)
        .await
        .map_err(|_| Error::Protocol("reconcile worker stopped".into()))
}

/// A heartbeat: the node's totals, the engine's health, and the slivers' figures of the
/// sampler's latest pass unless it is older than two intervals (the engine stopped answering).
fn heartbeat_msg(
    usage: &watch::Receiver<Usage>,
    samples: &watch::Receiver<Samples>,
    every: Duration,
    engine: Option<pb::EngineStatus>,
) -> pb::NodeMessage {
    let u = *usage.borrow();
    let slivers = match &*samples.borrow() {
        Some((at, figures)) if at.elapsed() <= every * 2 => {
            let when = SystemTime::now() - at.elapsed();
            figures
                .iter()
                .map(|(id, u)| crate::convert::sample_to_pb(id.clone(), *u, when))
                .collect()
        }
        _ => Vec::new(),
    };
    let hb = pb::Heartbeat {
        usage: Some(crate::convert::resources_to_pb(u.resources)),
        running: u.running,
        engine,
        slivers,
    };
    pb::NodeMessage {
        msg: Some(node_message::Msg::Heartbeat(hb)),
    }
}

fn closed() -> Error {
    Error::Protocol("outgoing stream closed".into())
}

/// Runs one connection; `Ok(())` means shutdown was requested.
pub async fn run<R: Runtime + Clone>(
    cfg: &AgentConfig,
    runtime: &R,
    access: Option<&Access<R>>,
    backoff: &mut Backoff,
    shared: &worker::Shared,
    connected: tokio::sync::oneshot::Sender<()>,
    shutdown: impl Future<Output = ()> + Clone,
) -> Result<()> {
    let node = &cfg.node;
    let identity = cfg.identity.get();
    let Some(ch) = unless(
        channel(&node.server, node.ca_cert.as_deref(), Some(&identity)),
        shutdown.clone(),
    )
    .await
    else {
        return Ok(());
    };
    let member = cfg.member.as_ref().map(|m| m.kube_node.as_str());
    let mut client = identified_client(ch?, member)?;
    // Session streams ride the same connection as the control channel.
    let sessions = Launcher::new(client.clone(), access.cloned());

    let mut reconciler = Reconciler::new(runtime.clone()).with_images(shared.images.clone());
    // Image fetches ride this connection too, under the node's own certificate.
    if let Some(images) = &shared.images {
        images.set_source(Some(std::sync::Arc::new(crate::fetch::GrpcSource::new(
            client.clone(),
        ))));
    }
    // An engine that does not answer does not keep the node off the channel: it connects,
    // says so, and the service shows the node's slivers as unknown until the engine is back.
    let observed = match reconciler.snapshot().await {
        Ok(o) => o,
        Err(e) => {
            if shared.engine.lost(e.to_string(), SystemTime::now()) {
                tracing::error!(error = %e, "container engine unavailable");
            }
            Vec::new()
        }
    };
    let mut engine_rx = shared.engine.subscribe();
    // A plain node has no cordon to watch: a receiver whose sender is gone never fires.
    let mut cordoned_rx = match &cfg.member {
        Some(m) => m.cordoned.clone(),
        None => watch::channel(false).1,
    };
    let (out_tx, out_rx) = mpsc::channel::<pb::NodeMessage>(256);
    let hello = pb::Hello {
        agent_version: crate::AGENT_VERSION.to_string(),
        capacity: Some(crate::convert::resources_to_pb(node.capacity)),
        port_range: Some(node.port_range.into()),
        address: cfg.address.clone(),
        labels: node.labels.clone().into_iter().collect(),
        observed: observed.into_iter().map(status_from).collect(),
        engine: engine_status(&engine_rx.borrow_and_update()),
        cordoned: *cordoned_rx.borrow_and_update(),
    };
    out_tx
        .send(pb::NodeMessage {
            msg: Some(node_message::Msg::Hello(hello)),
        })
        .await
        .map_err(|_| closed())?;
    let req = tonic::Request::new(ReceiverStream::new(out_rx));
    let Some(resp) = unless(client.control(req), shutdown.clone()).await else {
        return Ok(());
    };
    let mut inbound = resp
        .map_err(|s| Error::from_status("control", s))?
        .into_inner();

    let Some(first) = unless(
        timeout(WELCOME_TIMEOUT, inbound.message()),
        shutdown.clone(),
    )
    .await
    else {
        return Ok(());
    };
    let welcome = match first {
        Err(_) => return Err(Error::Protocol("no Welcome within 30 s".into())),
        Ok(Err(s)) => return Err(Error::from_status("control", s)),
        Ok(Ok(None)) => {
            return Err(Error::Protocol(
                "service closed the stream before Welcome".into(),
            ))
        }
        Ok(Ok(Some(pb::ServiceMessage {
            msg: Some(service_message::Msg::Welcome(w)),
        }))) => w,
        Ok(Ok(Some(other))) => {
            return Err(Error::Protocol(format!(
                "expected Welcome first, got {other:?}"
            )))
        }
    };
    backoff.reset();
    let every = welcome
        .heartbeat_interval
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_HEARTBEAT)
        .max(Duration::from_secs(1));
    backoff.cap_at(every);
    tracing::info!(node = %welcome.node, site = %welcome.site, heartbeat = ?every, "connected");

    // The offline worker stops before this session's worker starts: one reconciler at a time.
    let _ = connected.send(());
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (report_tx, mut report_rx) = mpsc::channel(256);
    let (usage_tx, usage_rx) = watch::channel(reconciler.usage());
    // Aborts the worker when the session ends, however it ends.
    let _worker = AbortOnDrop(tokio::spawn(worker::run(
        reconciler,
        cmd_rx,
        report_tx,
        usage_tx,
        shared.clone(),
    )));
    // Usage is sampled in a task of its own, each pass ending just before a heartbeat.
    let beats_from = tokio::time::Instant::now();
    let (samples_tx, samples_rx) = watch::channel(None);
    let _sampler = AbortOnDrop(tokio::spawn(crate::usage::run(
        runtime.clone(),
        shared.disk.clone(),
        shared.baselines.clone(),
        beats_from,
        every,
        samples_tx,
    )));
    let mut heartbeat = interval_at(beats_from, every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    maybe_renew(cfg, &out_tx).await?;

    loop {
        tokio::select! {
            _ = shutdown.clone() => {
                // A member whose Kubernetes node is gone says so; a stopping agent does not.
                let leaving = cfg.member.as_ref().is_some_and(|m| m.leaving.load(std::sync::atomic::Ordering::SeqCst));
                if leaving {
                    let msg = pb::NodeMessage { msg: Some(node_message::Msg::Leave(pb::Leave {})) };
                    let _ = out_tx.send(msg).await;
                }
                // Half-close our side; give the service a moment to end its side cleanly.
                drop(out_tx);
                let _ = timeout(CLOSE_TIMEOUT, async { while let Ok(Some(_)) = inbound.message().await {} }).await;
                tracing::info!("control channel closed");
                return Ok(());
            }
            m = inbound.message() => match m {
                Ok(Some(pb::ServiceMessage { msg: Some(service_message::Msg::Certificate(c)) })) => {
                    match cfg.identity.renewed(&c.certificate_pem) {
                        Ok(()) => {
                            tracing::info!("client certificate renewed; the next connection uses it");
                        }
                        Err(e) => tracing::error!(error = %e, "renewed certificate unusable"),
                    }
                }
                Ok(Some(msg)) => dispatch(msg, &cmd_tx, &out_tx, &sessions, cfg.member.as_ref()).await?,
                Ok(None) => return Err(Error::Protocol("service closed the stream".into())),
                Err(s) => return Err(Error::from_status("control", s)),
            },
            Some(r) = report_rx.recv() => {
                tracing::debug!(sliver = %r.sliver_id, state = ?r.state, message = %r.message, "report");
                let msg = pb::NodeMessage { msg: Some(node_message::Msg::Status(status_from(r))) };
                out_tx.send(msg).await.map_err(|_| closed())?;
            }
            _ = heartbeat.tick() => {
                let engine = engine_status(&engine_rx.borrow_and_update());
                out_tx.send(heartbeat_msg(&usage_rx, &samples_rx, every, engine)).await.map_err(|_| closed())?;
                maybe_renew(cfg, &out_tx).await?;
            }
            // The cluster cordoned or uncordoned the member's Kubernetes node.
            Ok(()) = cordoned_rx.changed() => {
                let cordoned = *cordoned_rx.borrow_and_update();
                let msg = pb::NodeMessage { msg: Some(node_message::Msg::Cordon(pb::Cordon { cordoned })) };
                out_tx.send(msg).await.map_err(|_| closed())?;
            }
            // The engine went away or came back: tell the service now, not at the next beat.
            Ok(()) = engine_rx.changed() => {
                let engine = engine_status(&engine_rx.borrow_and_update());
                out_tx.send(heartbeat_msg(&usage_rx, &samples_rx, every, engine)).await.map_err(|_| closed())?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(m: pb::NodeMessage) -> pb::Heartbeat {
        match m.msg {
            Some(node_message::Msg::Heartbeat(h)) => h,
            other => panic!("not a heartbeat: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_carry_the_latest_pass_unless_it_is_stale() {
        let (_usage_tx, usage) = watch::channel(Usage::default());
        let every = Duration::from_secs(10);
        let busy = crate::usage::SliverUsage {
            cpu_millis: 900,
            memory_bytes: 1 << 20,
            ..Default::default()
        };
        let pass = Some((tokio::time::Instant::now(), vec![("v1".to_string(), busy)]));
        let (_samples_tx, samples) = watch::channel(pass);
        let h = beat(heartbeat_msg(&usage, &samples, every, None));
        assert_eq!(h.slivers.len(), 1);
        assert_eq!(
            (h.slivers[0].sliver_id.as_str(), h.slivers[0].cpu_millis),
            ("v1", 900)
        );
        assert!(h.slivers[0].sampled_at.is_some());
        // The engine stopped answering two intervals ago: old figures are not sent as news.
        tokio::time::advance(every * 2 + Duration::from_millis(1)).await;
        assert!(beat(heartbeat_msg(&usage, &samples, every, None))
            .slivers
            .is_empty());
    }
}
