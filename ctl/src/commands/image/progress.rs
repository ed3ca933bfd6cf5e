//! The progress of a push on stderr: a bar of bytes with the current step and layer counts on a
//! terminal; nothing otherwise (scripts read the result, `-o json` on stdout). Never prints to
//! stdout.

use std::{io::IsTerminal, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const SIZED: &str =
    "{spinner:.cyan} {prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}";
const UNSIZED: &str = "{spinner:.cyan} {prefix} {bytes} {bytes_per_sec} {msg}";

/// A bar, or nothing when stderr is not a terminal. The bar is cleared when the handle made by
/// [`Progress::on_stderr`] is dropped (on success and on error alike), not when a clone is.
pub struct Progress(Option<ProgressBar>, bool);

impl Progress {
    /// Shown only on a terminal.
    pub fn on_stderr() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None, false);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(Some(bar), true)
    }

    /// Another handle on the same bar (for a stream that reports as it goes).
    pub fn clone_handle(&self) -> Progress {
        Progress(self.0.clone(), false)
    }

    /// Starts a step measured in bytes: `exporting`, `verifying`, `uploading`.
    pub fn step(&self, what: &str, total: Option<u64>) {
        let Some(bar) = &self.0 else { return };
        let template = if total.is_some() { SIZED } else { UNSIZED };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_length(total.unwrap_or(0));
        bar.set_position(0);
        bar.set_prefix(what.to_string());
        bar.set_message("");
    }

    /// Bytes done in the current step.
    pub fn at(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(bytes);
        }
    }

    /// Adds bytes done in the current step.
    pub fn add(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }

    /// A short note after the figures, e.g. `layer 2/3`.
    pub fn note(&self, text: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(text);
        }
    }

    /// Removes the bar (before the result or an error is printed).
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.1 {
            self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for t in [SIZED, UNSIZED] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
        // Off a terminal (as under cargo test) nothing is drawn and every call is a no-op.
        let p = Progress::on_stderr();
        p.step("uploading", Some(10));
        p.add(5);
        p.note("blob 1/1".into());
        p.finish();
    }
}
