//! Accepting connections so that nobody can hold the service's sockets for free: at most
//! `max_connections` are open (more are closed as soon as they are accepted), every accepted
//! socket gets TCP_NODELAY (small gRPC frames must not wait for Nagle), a connection that has
//! made no call within `first_request_timeout` is closed (a port scan, a half-open HTTP/2
//! handshake, a stalled TLS hello; a call answered UNAUTHENTICATED does not count, so a
//! client without a valid token cannot hold a socket either), and so is one that has had no
//! call in progress for `idle_timeout`.
//!
//! Why here and not in tonic's options: HTTP/2 keepalive pings only find dead peers (an idle
//! attacker answers them), `Server::timeout` would cut long streams, and
//! `concurrency_limit_per_connection` bounds calls, not sockets. The one thing this must never
//! do is close a connection while a call on it is in progress: `TrackCalls` counts calls per
//! connection until their response body ends.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

/// Limits on connections (see `config::Limits`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub first_request_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Open connections by peer address, so a call can find its connection's `Activity` while
/// requests keep tonic's own `TcpConnectInfo` (which `remote_addr` and `peer_certs` read).
type Registry = Arc<Mutex<HashMap<SocketAddr, Arc<Activity>>>>;

/// Accepted connections, guarded (refused ones are closed at once and logged sparingly), and
/// the layer that must wrap the server's services so calls are counted.
pub fn incoming(
    listener: TcpListener,
    limits: ConnLimits,
) -> (impl Stream<Item = io::Result<Guarded>>, TrackCalls) {
    let registry = Registry::default();
    let track = TrackCalls(registry.clone());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let state = (listener, slots, 0u64, None::<Instant>);
    let stream = futures::stream::unfold(state, move |(listener, slots, mut refused, mut told)| {
        let registry = registry.clone();
        async move {
            loop {
                let (io, remote) = match listener.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin on it.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    refused += 1;
                    if told.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::warn!(%remote, refused, limit = limits.max_connections,
                            "too many open connections; closing new ones");
                        told = Some(Instant::now());
                    }
                    drop(io);
                    continue;
                };
                let _ = io.set_nodelay(true);
                let g = Guarded::new(io, remote, permit, limits, registry.clone());
                return Some((Ok(g), (listener, slots, refused, told)));
            }
        }
    });
    (stream, track)
}

/// What a connection has done, shared between its socket and the calls on it.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    limits: ConnLimits,
    /// Calls answered with anything but UNAUTHENTICATED.
    calls: AtomicU64,
    in_progress: AtomicUsize,
    /// When the last call ended, in milliseconds since `opened`.
    last_end_ms: AtomicU64,
}

impl Activity {
    fn start_call(self: &Arc<Self>) -> CallGuard {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        CallGuard(self.clone())
    }

    /// A call was answered; `authenticated` unless its status is UNAUTHENTICATED.
    fn answered(&self, authenticated: bool) {
        if authenticated {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Close now (with the reason), or look again at the instant returned.
    fn verdict(&self, now: Instant) -> Result<Instant, &'static str> {
        // A call in progress is never cut, whatever else holds.
        if self.in_progress.load(Ordering::SeqCst) > 0 {
            return Ok(now
                + self
                    .limits
                    .idle_timeout
                    .min(self.limits.first_request_timeout));
        }
        if self.calls.load(Ordering::SeqCst) == 0 {
            let due = self.opened + self.limits.first_request_timeout;
            return if now >= due {
                Err("no authenticated call within the first-request timeout")
            } else {
                Ok(due)
            };
        }
        let since = self.opened + Duration::from_millis(self.last_end_ms.load(Ordering::SeqCst));
        let due = since + self.limits.idle_timeout;
        if now >= due {
            Err("no call in progress within the idle timeout")
        } else {
            Ok(due)
        }
    }
}

/// One call in progress; dropped when its response body ends or is abandoned.
#[derive(Debug)]
struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_end_ms
            .store(a.opened.elapsed().as_millis() as u64, Ordering::SeqCst);
        a.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted socket under the connection limits.
#[derive(Debug)]
pub struct Guarded {
    io: TcpStream,
    remote: SocketAddr,
    activity: Arc<Activity>,
    check: Pin<Box<Sleep>>,
    registry: Registry,
    _slot: OwnedSemaphorePermit,
}

impl Guarded {
    fn new(
        io: TcpStream,
        remote: SocketAddr,
        slot: OwnedSemaphorePermit,
        limits: ConnLimits,
        registry: Registry,
    ) -> Self {
        let opened = Instant::now();
        let activity = Arc::new(Activity {
            opened,
            limits,
            calls: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        });
        lock(&registry).insert(remote, activity.clone());
        Self {
            io,
            remote,
            activity,
            check: Box::pin(tokio::time::sleep_until(
                opened + limits.first_request_timeout,
            )),
            registry,
            _slot: slot,
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let mut g = lock(&self.registry);
        // Only its own entry: the address may already belong to a newer connection.
        if g.get(&self.remote)
            .is_some_and(|a| Arc::ptr_eq(a, &self.activity))
        {
            g.remove(&self.remote);
        }
    }
}

fn lock(r: &Registry) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Activity>>> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if r.is_ready() {
            return r;
        }
        // Nothing to read: the server is waiting on the client. Has it waited long enough?
        loop {
            if this.check.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match this.activity.verdict(Instant::now()) {
                Ok(at) => this.check.as_mut().reset(at),
                Err(why) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why))),
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Tower layer that counts each call against its connection until the response body ends.
#[derive(Debug, Clone)]
pub struct TrackCalls(Registry);

impl<S> tower_layer::Layer<S> for TrackCalls {
    type Service = Tracked<S>;
    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked(inner, self.0.clone())
    }
}

impl TrackCalls {
    /// Connections open now (for metrics).
    pub fn open_connections(&self) -> usize {
        lock(&self.0).len()
    }
}

/// See `TrackCalls`.
#[derive(Debug, Clone)]
pub struct Tracked<S>(S, Registry);

fn activity_of<B>(req: &http::Request<B>, registry: &Registry) -> Option<Arc<Activity>> {
    let ext = req.extensions();
    let remote = ext
        .get::<TcpConnectInfo>()
        .and_then(|c| c.remote_addr())
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })?;
    lock(registry).get(&remote).cloned()
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for Tracked<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body + Send + 'static,
{
    type Response = http::Response<CallBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let guard = activity_of(&req, &self.1).map(|a| a.start_call());
        let fut = self.0.call(req);
        Box::pin(async move {
            let res = fut.await?;
            if let Some(g) = &guard {
                // Refusals come back at once as a trailers-only response: status in headers.
                let refused = res
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|v| v.as_bytes() == b"16");
                g.0.answered(!refused);
            }
            Ok(res.map(|inner| CallBody {
                inner: Box::pin(inner),
                _guard: guard,
            }))
        })
    }
}

/// A response body that holds its call's place on the connection until it ends.
pub struct CallBody<B> {
    inner: Pin<Box<B>>,
    _guard: Option<CallGuard>,
}

impl<B: http_body::Body> http_body::Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.get_mut().inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(first: u64, idle: u64) -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            limits: ConnLimits {
                max_connections: 1,
                first_request_timeout: Duration::from_secs(first),
                idle_timeout: Duration::from_secs(idle),
            },
            calls: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        })
    }

    #[test]
    fn silent_connections_close_and_calls_keep_them_open() {
        let a = activity(10, 60);
        let t0 = a.opened;
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(a.verdict(t0), Ok(at(10)));
        assert!(a.verdict(at(10)).is_err());
        let call = a.start_call();
        // A call in progress is never cut, however long, even before it is answered.
        assert!(a.verdict(at(3600)).is_ok());
        a.answered(true);
        drop(call);
        // As if the call had ended 5 s after the connection opened.
        a.last_end_ms.store(5000, Ordering::SeqCst);
        assert_eq!(a.verdict(at(6)), Ok(at(65)));
        assert!(a.verdict(at(65)).is_err());
    }

    #[test]
    fn calls_refused_as_unauthenticated_do_not_keep_a_connection() {
        let a = activity(10, 60);
        let at = |s: u64| a.opened + Duration::from_secs(s);
        for _ in 0..3 {
            let call = a.start_call();
            a.answered(false);
            drop(call);
        }
        assert!(a.verdict(at(10)).is_err());
    }
}
