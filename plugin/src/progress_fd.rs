//! `--progress-fd N`: progress as JSON lines on a file descriptor the caller opened, for
//! scripts and UIs. One object a line, every one with `"v": 1` (the schema version, bumped
//! only when a field changes meaning; fields may be added) and `"event"`:
//!
//! ```text
//! {"v":1,"event":"start","command":"image pull","imgref":"…"}
//! {"v":1,"event":"phase","phase":"reading the image"}
//! {"v":1,"event":"plan","layers":[{"index":0,"digest":…,"diff_id":…,"size":…,"kind":"ostree","action":"fetched"}],"bytes_to_fetch":N}
//! {"v":1,"event":"layer_start","index":3,"name":"layer 3 (sha256:…)","bytes_total":N}
//! {"v":1,"event":"layer_progress","index":3,"bytes_done":N,"bytes_total":N}   at most 10 a second a layer
//! {"v":1,"event":"layer_done","index":3,"bytes_done":N,"bytes_total":N}
//! {"v":1,"event":"done","result":{…the command's --json report…}}
//! {"v":1,"event":"error","message":"…"}
//! ```
//! Bytes are blob bytes (compressed, as the manifest counts them) when importing and tar bytes
//! when exporting. A reader that goes away does not stop the work: write errors are ignored.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use storage_bridge::progress::Progress;

/// Schema version of the events.
pub const SCHEMA: u32 = 1;
const MIN_INTERVAL: Duration = Duration::from_millis(100);

struct LayerState {
    done: u64,
    total: u64,
    last: Option<Instant>,
}

/// Writes the events to the descriptor.
pub struct JsonLines {
    out: Mutex<std::fs::File>,
    layers: Mutex<HashMap<usize, LayerState>>,
}

impl JsonLines {
    /// Open descriptor `fd` for writing (through /proc/self/fd, so no unsafe fd adoption).
    pub fn open(fd: i32) -> Result<Self> {
        let path = format!("/proc/self/fd/{fd}");
        let f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("--progress-fd {fd}: not a descriptor open for writing"))?;
        Ok(JsonLines {
            out: Mutex::new(f),
            layers: Mutex::new(HashMap::new()),
        })
    }

    /// Write one event.
    pub fn event(&self, event: &str, mut fields: Value) {
        if let Value::Object(m) = &mut fields {
            m.insert("v".into(), json!(SCHEMA));
            m.insert("event".into(), json!(event));
        }
        let mut line = fields.to_string();
        line.push('\n');
        if let Ok(mut f) = self.out.lock() {
            f.write_all(line.as_bytes()).ok();
        }
    }
}

impl Progress for JsonLines {
    fn phase(&self, name: &str) {
        self.event("phase", json!({ "phase": name }));
    }

    fn layer_start(&self, index: usize, name: &str, total: u64) {
        if let Ok(mut l) = self.layers.lock() {
            l.insert(
                index,
                LayerState {
                    done: 0,
                    total,
                    last: None,
                },
            );
        }
        self.event(
            "layer_start",
            json!({ "index": index, "name": name, "bytes_total": total }),
        );
    }

    fn layer_bytes(&self, index: usize, bytes: u64) {
        let due = {
            let Ok(mut l) = self.layers.lock() else {
                return;
            };
            let Some(s) = l.get_mut(&index) else { return };
            s.done += bytes;
            let now = Instant::now();
            if s.last.is_some_and(|t| now.duration_since(t) < MIN_INTERVAL) {
                None
            } else {
                s.last = Some(now);
                Some((s.done, s.total))
            }
        };
        if let Some((done, total)) = due {
            self.event(
                "layer_progress",
                json!({ "index": index, "bytes_done": done, "bytes_total": total }),
            );
        }
    }

    fn layer_done(&self, index: usize) {
        let (done, total) = self
            .layers
            .lock()
            .ok()
            .and_then(|mut l| l.remove(&index))
            .map(|s| (s.done, s.total))
            .unwrap_or((0, 0));
        self.event(
            "layer_done",
            json!({ "index": index, "bytes_done": done, "bytes_total": total }),
        );
    }

    fn plan(&self, plan: &Value) {
        self.event("plan", plan.clone());
    }
}

/// Progress to the terminal bars and, when asked for, to `--progress-fd`.
pub struct Reporter {
    pub bars: crate::render::LayerBars,
    pub json: Option<JsonLines>,
}

impl Reporter {
    /// `bars_enabled`: whether bars may be drawn (they still need a terminal).
    pub fn new(bars_enabled: bool, fd: Option<i32>, command: &str, imgref: &str) -> Result<Self> {
        let json = fd.map(JsonLines::open).transpose()?;
        if let Some(j) = &json {
            j.event("start", json!({ "command": command, "imgref": imgref }));
        }
        Ok(Reporter {
            bars: crate::render::LayerBars::new(bars_enabled),
            json,
        })
    }

    /// Close the bars and write the last event: the report, or the error.
    pub fn finish<T: serde::Serialize>(&self, r: &Result<T>) {
        self.bars.finish();
        if let Some(j) = &self.json {
            match r {
                Ok(v) => j.event(
                    "done",
                    json!({ "result": serde_json::to_value(v).unwrap_or(Value::Null) }),
                ),
                Err(e) => j.event("error", json!({ "message": format!("{e:#}") })),
            }
        }
    }
}

impl Progress for Reporter {
    fn phase(&self, name: &str) {
        self.bars.phase(name);
        if let Some(j) = &self.json {
            j.phase(name);
        }
    }
    fn layer_start(&self, index: usize, name: &str, total: u64) {
        self.bars.layer_start(index, name, total);
        if let Some(j) = &self.json {
            j.layer_start(index, name, total);
        }
    }
    fn layer_bytes(&self, index: usize, bytes: u64) {
        self.bars.layer_bytes(index, bytes);
        if let Some(j) = &self.json {
            j.layer_bytes(index, bytes);
        }
    }
    fn layer_done(&self, index: usize) {
        self.bars.layer_done(index);
        if let Some(j) = &self.json {
            j.layer_done(index);
        }
    }
    fn plan(&self, plan: &Value) {
        if let Some(j) = &self.json {
            j.plan(plan);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_versioned_lines_and_progress_is_throttled() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events");
        let f = std::fs::File::create(&p).unwrap();
        let j = JsonLines {
            out: Mutex::new(f),
            layers: Mutex::new(HashMap::new()),
        };
        j.phase("reading the image");
        j.layer_start(2, "layer 2", 300);
        for _ in 0..3 {
            j.layer_bytes(2, 100);
        }
        j.layer_done(2);
        let text = std::fs::read_to_string(&p).unwrap();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(events.iter().all(|e| e["v"] == 1));
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        // Three byte reports within 100 ms: one progress event, then the totals at done.
        assert_eq!(
            kinds,
            ["phase", "layer_start", "layer_progress", "layer_done"]
        );
        assert_eq!(events[3]["bytes_done"], 300);
        assert_eq!(events[3]["bytes_total"], 300);
    }

    #[test]
    fn a_closed_descriptor_is_a_clear_error() {
        let e = JsonLines::open(987).err().unwrap();
        assert!(format!("{e:#}").contains("--progress-fd 987"));
    }
}
