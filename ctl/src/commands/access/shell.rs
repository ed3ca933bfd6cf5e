//! `slicectl shell SLICE/INDEX [-- CMD...]`: an interactive session in one sliver (`sh` by
//! default). On a terminal: raw mode, a remote pseudo-terminal of the same size, resizes on
//! SIGWINCH, and every key (Ctrl-C included) goes to the sliver. From a pipe: no raw mode, no
//! pseudo-terminal; stdin is forwarded until its end. Either way slicectl exits with the remote
//! command's exit code.

use std::io::{Read, Write};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use slicebed_proto::v1::{
    exec_request::Msg as In, exec_response::Msg as Out, ExecRequest, ExecResponse, ExecStart,
    SliverRef,
};
use tokio::{
    signal::unix::{signal, Signal, SignalKind},
    sync::mpsc,
};
use tokio_stream::wrappers::ReceiverStream;

use super::{parse_one_sliver, term};
use crate::{commands::parse_key_value, ctx::Ctx, errors::Exit};

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The sliver, e.g. demo/0
    #[arg(value_name = "SLICE/INDEX", value_parser = parse_one_sliver)]
    pub sliver: (String, u32),
    /// Environment variable for the command (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Command to run instead of `sh`, after `--`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Read size for stdin; a paste arrives in a few messages, a key press in one.
const STDIN_BUF: usize = 32 * 1024;

pub async fn run(args: ShellArgs, ctx: &Ctx) -> Result<()> {
    let clients = ctx.connect().await?;
    let tty = term::stdin_is_terminal();
    let command = if args.command.is_empty() {
        vec!["sh".to_string()]
    } else {
        args.command
    };
    let mut env: std::collections::HashMap<String, String> = args.env.into_iter().collect();
    if tty {
        if let Ok(t) = std::env::var("TERM") {
            env.entry("TERM".into()).or_insert(t);
        }
    }
    let (slice, index) = args.sliver;
    let start = ExecStart {
        sliver: Some(SliverRef { slice, index }),
        command,
        tty,
        size: if tty { term::size() } else { None },
        env,
        stdin: true,
    };
    let (tx, rx) = mpsc::channel(16);
    tx.send(msg(In::Start(start))).await?;
    let mut call = clients
        .access
        .clone()
        .exec(ReceiverStream::new(rx))
        .await?
        .into_inner();
    // Raw mode only once the session exists, so that a refusal prints as a normal line.
    let raw = if tty {
        Some(term::RawMode::enter().context("cannot put the terminal in raw mode")?)
    } else {
        None
    };
    let winch = if tty {
        Some(signal(SignalKind::window_change()).context("cannot watch terminal resizes")?)
    } else {
        None
    };
    // Input has its own task so that a stalled upload of stdin never stops output from
    // being read, and the other way round.
    let forwarder = tokio::spawn(forward(read_stdin(), winch, tx));
    let result = relay_output(&mut call).await;
    forwarder.abort();
    drop(raw);
    let (code, message) = result?;
    if code == -1 && !message.is_empty() {
        bail!("{message}");
    }
    if !message.is_empty() {
        eprintln!("error: {message}");
    }
    match code {
        0 if message.is_empty() => Ok(()),
        0 => Err(Exit(1).into()),
        c => Err(Exit(u8::try_from(c).unwrap_or(1)).into()),
    }
}

fn msg(m: In) -> ExecRequest {
    ExecRequest { msg: Some(m) }
}

/// Prints output as it arrives; returns the exit code and message.
async fn relay_output(call: &mut tonic::Streaming<ExecResponse>) -> Result<(i32, String)> {
    loop {
        match call.message().await? {
            Some(ExecResponse { msg: Some(m) }) => match m {
                Out::Stdout(b) => write_flush(&mut std::io::stdout().lock(), &b),
                Out::Stderr(b) => write_flush(&mut std::io::stderr().lock(), &b),
                Out::Exit(e) => return Ok((e.code, e.message)),
            },
            Some(_) => {}
            None => bail!("the session ended without an exit code"),
        }
    }
}

fn write_flush(w: &mut impl Write, b: &[u8]) {
    // A closed stdout is not a reason to abandon the session's exit code.
    let _ = w.write_all(b).and_then(|_| w.flush());
}

/// Stdin in chunks as they become readable. A plain thread: a blocking read cannot be cancelled,
/// and a detached thread does not keep the process alive at exit.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; STDIN_BUF];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// Sends stdin bytes, the end of stdin and terminal resizes until the call goes away.
async fn forward(
    mut input: mpsc::Receiver<Vec<u8>>,
    mut winch: Option<Signal>,
    tx: mpsc::Sender<ExecRequest>,
) {
    let mut input_open = true;
    loop {
        let m = tokio::select! {
            b = input.recv(), if input_open => match b {
                Some(b) => In::Stdin(b),
                None => {
                    input_open = false;
                    In::StdinEof(true)
                }
            },
            Some(()) = resized(&mut winch) => match term::size() {
                Some(size) => In::Resize(size),
                None => continue,
            },
            else => return,
        };
        if tx.send(msg(m)).await.is_err() {
            return;
        }
    }
}

/// The next SIGWINCH, or never without a terminal.
async fn resized(winch: &mut Option<Signal>) -> Option<()> {
    match winch {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
