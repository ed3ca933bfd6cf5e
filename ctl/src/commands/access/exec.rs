//! `slicectl exec SLICE [--sliver I]... [--site S]... [--timeout D] -- CMD...`: the same command in
//! many slivers at once. Output streams live, each line prefixed with its sliver; a table of exit
//! codes ends the run, and the exit code is 1 unless every sliver ran the command and exited 0.

use std::{cell::RefCell, io::IsTerminal, io::Write, time::Duration};

use anyhow::Result;
use clap::Args;
use futures::future::join_all;
use serde::Serialize;
use slicebed_proto::v1::{exec_request, exec_response, ExecRequest, ExecResponse, ExecStart};

use super::{
    lines::{Lines, Stream},
    select, Sliver,
};
use crate::{
    client::Clients,
    commands::parse_key_value,
    ctx::Ctx,
    errors::{status_line, Exit},
    output::Table,
    quantity::parse_duration,
};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Slice name
    pub slice: String,
    /// Only the sliver with this index (repeatable, or comma-separated)
    #[arg(long = "sliver", value_name = "INDEX", value_delimiter = ',')]
    pub slivers: Vec<u32>,
    /// Only slivers on this site (repeatable, or comma-separated)
    #[arg(long = "site", value_name = "SITE", value_delimiter = ',')]
    pub sites: Vec<String>,
    /// Give up on a sliver after this long, ending its process, e.g. 30s [default: no limit]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<i64>,
    /// Environment variable for the command (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, num_args = 1.., value_name = "CMD")]
    pub command: Vec<String>,
}

/// How one sliver's exec ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command ran and exited with this code (and maybe a word on why it was cut short).
    Exited(i32, String),
    /// `--timeout` passed; the call was dropped, which ends the process.
    TimedOut,
    /// The command could not run, or the call broke.
    Failed(String),
}

impl Outcome {
    /// Whether this sliver counts as a success.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Exited(0, m) if m.is_empty())
    }

    /// The EXIT cell of the summary.
    pub fn cell(&self) -> String {
        match self {
            Outcome::Exited(code, m) if m.is_empty() => code.to_string(),
            Outcome::Exited(code, m) => format!("{code} ({m})"),
            Outcome::TimedOut => "timed out".into(),
            Outcome::Failed(m) => format!("failed: {m}"),
        }
    }
}

/// What `-o json` prints for each sliver, one object per line.
#[derive(Debug, Serialize)]
struct ExecView<'a> {
    slice: &'a str,
    index: u32,
    sliver: &'a str,
    node: &'a str,
    site: &'a str,
    /// `exited`, `timed_out` or `failed`.
    status: &'static str,
    exit_code: Option<i32>,
    error: Option<String>,
    stdout: String,
    stderr: String,
}

/// Where output goes: prefixed to the terminal, or collected for JSON.
struct Sink {
    lines: Lines,
    collected: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Sink {
    fn output(&mut self, slot: usize, stream: Stream, data: &[u8]) {
        if let Some(c) = &mut self.collected {
            let (out, err) = &mut c[slot];
            match stream {
                Stream::Stdout => out.extend_from_slice(data),
                Stream::Stderr => err.extend_from_slice(data),
            }
            return;
        }
        let bytes = self.lines.push(slot, stream, data);
        write(stream, &bytes);
    }

    fn finish(&mut self, slot: usize) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let bytes = self.lines.finish(slot, stream);
            write(stream, &bytes);
        }
    }
}

/// Writes to our stdout or stderr. A closed pipe drops the output but not the run: the summary
/// and the exit code still matter.
fn write(stream: Stream, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(bytes),
        Stream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
}

pub async fn run(args: ExecArgs, ctx: &Ctx) -> Result<()> {
    let clients = ctx.connect().await?;
    let slivers = select(&clients, &args.slice, &args.slivers, &args.sites).await?;
    let labels: Vec<String> = slivers.iter().map(Sliver::label).collect();
    let sink = RefCell::new(Sink {
        lines: Lines::new(
            Some(&labels),
            std::io::stdout().is_terminal(),
            std::io::stderr().is_terminal(),
        ),
        collected: ctx
            .json()
            .then(|| vec![(Vec::new(), Vec::new()); slivers.len()]),
    });
    let timeout = args.timeout.map(|s| Duration::from_secs(s.max(0) as u64));
    // All calls start at once; they share one connection (HTTP/2 streams).
    let outcomes = join_all(slivers.iter().enumerate().map(|(slot, v)| {
        let (sink, command, env) = (&sink, args.command.clone(), args.env.clone());
        let clients = &clients;
        async move {
            let call = exec_one(clients, v, slot, command, env, sink);
            let outcome = match timeout {
                // Dropping the call on timeout cancels it, and the service ends the process.
                Some(t) => tokio::time::timeout(t, call)
                    .await
                    .unwrap_or(Outcome::TimedOut),
                None => call.await,
            };
            sink.borrow_mut().finish(slot);
            outcome
        }
    }))
    .await;
    let sink = sink.into_inner();
    if let Some(collected) = sink.collected {
        for ((v, o), (out, err)) in slivers.iter().zip(&outcomes).zip(collected) {
            let line = serde_json::to_string(&view(v, o, &out, &err))?;
            crate::output::out(&format!("{line}\n"))?;
        }
    } else {
        eprint!("{}", summary(&slivers, &outcomes));
    }
    if outcomes.iter().all(Outcome::ok) {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}

async fn exec_one(
    clients: &Clients,
    v: &Sliver,
    slot: usize,
    command: Vec<String>,
    env: Vec<(String, String)>,
    sink: &RefCell<Sink>,
) -> Outcome {
    let start = ExecRequest {
        msg: Some(exec_request::Msg::Start(ExecStart {
            sliver: Some(v.to_ref()),
            command,
            tty: false,
            size: None,
            env: env.into_iter().collect(),
            stdin: false,
        })),
    };
    // The request stream ends after `start`: the service reads that as the end of stdin, not
    // of the call.
    let mut stream = match clients.access.clone().exec(tokio_stream::once(start)).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Outcome::Failed(status_line(&s)),
    };
    loop {
        match stream.message().await {
            Ok(Some(ExecResponse { msg: Some(m) })) => match m {
                exec_response::Msg::Stdout(b) => sink.borrow_mut().output(slot, Stream::Stdout, &b),
                exec_response::Msg::Stderr(b) => sink.borrow_mut().output(slot, Stream::Stderr, &b),
                exec_response::Msg::Exit(e) => {
                    return if e.code == -1 && !e.message.is_empty() {
                        Outcome::Failed(e.message)
                    } else {
                        Outcome::Exited(e.code, e.message)
                    }
                }
            },
            Ok(Some(_)) => {}
            Ok(None) => return Outcome::Failed("the call ended without an exit code".into()),
            Err(s) => return Outcome::Failed(status_line(&s)),
        }
    }
}

/// The table of exit codes printed at the end.
pub fn summary(slivers: &[Sliver], outcomes: &[Outcome]) -> String {
    let mut t = Table::new(["SLIVER", "NODE", "SITE", "EXIT"]);
    for (v, o) in slivers.iter().zip(outcomes) {
        t.row([
            format!("{}/{}", v.slice, v.index),
            v.node.clone(),
            v.site.clone(),
            o.cell(),
        ]);
    }
    t.to_string()
}

fn view<'a>(v: &'a Sliver, o: &Outcome, out: &[u8], err: &[u8]) -> ExecView<'a> {
    let (status, exit_code, error) = match o {
        Outcome::Exited(c, m) => ("exited", Some(*c), (!m.is_empty()).then(|| m.clone())),
        Outcome::TimedOut => ("timed_out", None, Some("timed out".into())),
        Outcome::Failed(m) => ("failed", None, Some(m.clone())),
    };
    ExecView {
        slice: &v.slice,
        index: v.index,
        sliver: &v.id,
        node: &v.node,
        site: &v.site,
        status,
        exit_code,
        error,
        stdout: String::from_utf8_lossy(out).into_owned(),
        stderr: String::from_utf8_lossy(err).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_every_ending() {
        let slivers = [
            Sliver::test(0, "node-eth", "eth"),
            Sliver::test(1, "node-mit", "mit"),
            Sliver::test(2, "node-kaist", "kaist"),
            Sliver::test(3, "node-mit", "mit"),
        ];
        let outcomes = [
            Outcome::Exited(0, String::new()),
            Outcome::Exited(3, String::new()),
            Outcome::TimedOut,
            Outcome::Failed("sliver is not running".into()),
        ];
        assert_eq!(
            summary(&slivers, &outcomes),
            "SLIVER  NODE        SITE   EXIT\n\
             demo/0  node-eth    eth    0\n\
             demo/1  node-mit    mit    3\n\
             demo/2  node-kaist  kaist  timed out\n\
             demo/3  node-mit    mit    failed: sliver is not running\n"
        );
        assert!(outcomes[0].ok());
        assert!(!outcomes.iter().skip(1).any(Outcome::ok));
        assert!(!Outcome::Exited(0, "idle for 30m".into()).ok());
    }

    #[test]
    fn json_view_keeps_output_and_status() {
        let v = Sliver::test(1, "node-mit", "mit");
        let j = serde_json::to_value(view(&v, &Outcome::TimedOut, b"a\n", b"")).unwrap();
        assert_eq!(j["status"], "timed_out");
        assert_eq!(j["exit_code"], serde_json::Value::Null);
        assert_eq!(j["stdout"], "a\n");
        assert_eq!(j["index"], 1);
    }
}
