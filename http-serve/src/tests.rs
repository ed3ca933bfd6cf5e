use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

async fn start(max_connections: usize) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    start_with(max_connections, Duration::from_millis(300)).await
}

async fn start_with(
    max_connections: usize,
    header_timeout: Duration,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let caps = Caps {
        name: "test",
        max_connections,
        header_timeout,
        max_life: Duration::from_secs(60),
    };
    let task = tokio::spawn(serve(listener, caps, |req: Request<Incoming>| async move {
        Response::new(Full::new(Bytes::from(format!(
            "you asked {}",
            req.uri().path()
        ))))
    }));
    (addr, task)
}

/// Everything the server sends until it closes; panics if it has not closed after a long
/// while (so a test fails, rather than passes, when the server keeps a connection open).
async fn read_all(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&buf).into_owned()
}

async fn ask(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_all(&mut s).await
}

#[tokio::test]
async fn answers_with_the_handler() {
    let (addr, _task) = start(4).await;
    let got = ask(addr, "/hello").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("you asked /hello"), "{got}");
}

#[tokio::test]
async fn a_connection_over_the_cap_is_closed_unanswered_and_the_slot_comes_back() {
    let (addr, _task) = start(1).await;
    // The one slot, held by a connection that sends nothing yet.
    let mut holder = TcpStream::connect(addr).await.unwrap();
    // Make sure the server has accepted it before the next one arrives.
    holder
        .write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut over = TcpStream::connect(addr).await.unwrap();
    let _ = over
        .write_all(b"GET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await;
    assert_eq!(read_all(&mut over).await, "", "closed without an answer");
    // The holder finishes its request and goes: the slot is free again.
    holder
        .write_all(b"connection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(read_all(&mut holder).await.ends_with("you asked /a"));
    let mut answered = String::new();
    for _ in 0..50 {
        answered = ask(addr, "/c").await;
        if !answered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered.ends_with("you asked /c"), "{answered:?}");
}

#[tokio::test]
async fn a_client_that_never_sends_its_headers_is_cut_off() {
    let (addr, _task) = start(4).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    // The server closes (hyper may first answer 408); it never waits for the rest.
    let got = read_all(&mut s).await;
    assert!(!got.contains("you asked"), "{got}");
}

#[tokio::test]
async fn aborting_the_server_closes_open_connections() {
    // Kept-alive connections would otherwise stay open for the whole hour.
    let (addr, task) = start_with(4, Duration::from_secs(3600)).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    task.abort();
    let rest = read_all(&mut s).await;
    assert!(rest.contains("you asked /x"), "{rest}");
}

#[tokio::test]
async fn the_bound_address_is_recorded_and_a_bad_one_named() {
    let dir = std::env::temp_dir().join(format!("slicebed-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.addr");
    let l = bind("127.0.0.1:0", "test").await.unwrap();
    let bound = announce(&l, &file, "test", "/").unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), bound.to_string());
    assert_eq!(bound, l.local_addr().unwrap());
    let err = bind("256.0.0.1:1", "the thing").await.unwrap_err();
    assert!(
        format!("{err:#}").contains("the thing: listening on 256.0.0.1:1"),
        "{err:#}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
