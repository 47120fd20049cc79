//! What the process's log subscriber wrote, for the test binaries that
//! install one to read what scimd logged (`outage_log`, `request_log`).

use std::sync::{Arc, Mutex};

/// The log as written so far; a subscriber's writer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).to_string()
    }

    /// How many lines hold `text`.
    pub fn lines_with(&self, text: &str) -> usize {
        self.text().lines().filter(|l| l.contains(text)).count()
    }

    /// The first line that holds `text`.
    pub fn line_with(&self, text: &str) -> String {
        let log = self.text();
        log.lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?} in:\n{log}"))
            .to_string()
    }
}
