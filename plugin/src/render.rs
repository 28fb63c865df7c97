//! Human output: progress bars on a terminal, summaries on stderr. Never in the library.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use storage_bridge::pipeline::export::ExportReport;
use storage_bridge::progress::Progress;

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OSTREE_CONTAINER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// One bar per layer (bytes of tar written), shown only on a terminal.
pub struct LayerBars {
    multi: Option<MultiProgress>,
    bars: Mutex<Vec<Option<ProgressBar>>>,
    phase: Mutex<Option<ProgressBar>>,
}

/// Layers smaller than this get no bar of their own (they finish at once).
const MIN_BAR_BYTES: u64 = 4 << 20;

impl LayerBars {
    pub fn new(enabled: bool) -> Self {
        let multi = (enabled && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        LayerBars {
            multi,
            bars: Mutex::new(Vec::new()),
            phase: Mutex::new(None),
        }
    }

    pub fn finish(&self) {
        if let Ok(mut p) = self.phase.lock() {
            if let Some(b) = p.take() {
                b.finish_and_clear();
            }
        }
        if let Ok(bars) = self.bars.lock() {
            for b in bars.iter().flatten() {
                b.finish_and_clear();
            }
        }
    }
}

impl Progress for LayerBars {
    fn phase(&self, name: &str) {
        let Some(m) = &self.multi else { return };
        if let Ok(mut p) = self.phase.lock() {
            let b = p.get_or_insert_with(|| {
                let b = m.add(ProgressBar::new_spinner());
                b.enable_steady_tick(std::time::Duration::from_millis(120));
                b
            });
            b.set_message(name.to_string());
        }
    }

    fn layer_start(&self, index: usize, name: &str, total: u64) {
        let Some(m) = &self.multi else { return };
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        if bars.len() <= index {
            bars.resize(index + 1, None);
        }
        if total < MIN_BAR_BYTES {
            return;
        }
        let b = m.add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(
            "{prefix:>4} {wide_msg} {bytes:>10}/{total_bytes:10} {bar:30} {bytes_per_sec:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        b.set_style(style);
        b.set_prefix(format!("#{index}"));
        let mut name = name.to_string();
        name.truncate(40);
        b.set_message(name);
        bars[index] = Some(b);
    }

    fn layer_bytes(&self, index: usize, bytes: u64) {
        if self.multi.is_none() {
            return;
        }
        if let Ok(bars) = self.bars.lock() {
            if let Some(Some(b)) = bars.get(index) {
                b.inc(bytes);
            }
        }
    }

    fn layer_done(&self, index: usize) {
        if let Ok(bars) = self.bars.lock() {
            if let Some(Some(b)) = bars.get(index) {
                b.finish_and_clear();
            }
        }
    }
}

pub fn mib(n: u64) -> String {
    if n < 1 << 20 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

pub fn export_summary(r: &ExportReport) {
    let chunked = if r.chunking.sources.is_empty() {
        "no component source".to_string()
    } else {
        r.chunking.sources.join(", ")
    };
    eprintln!("Exported commit {} to {}", r.commit, r.destination);
    eprintln!(
        "  {} layers, {} ({} compression); components from {}{}",
        r.layers.len(),
        mib(r.total_size),
        r.compression,
        chunked,
        if r.prior_build_used {
            "; prior build layout kept"
        } else {
            ""
        }
    );
    for w in &r.warnings {
        eprintln!("  warning: {w}");
    }
}

pub fn pull_summary(r: &storage_bridge::PullReport) {
    let fetched: Vec<_> = r.layers.iter().filter(|l| l.action == "fetched").collect();
    println!(
        "layers: {} ({} present, {} to fetch, {}; read via {})",
        r.layers.len(),
        r.layers.len() - fetched.len(),
        fetched.len(),
        mib(r.bytes_to_fetch),
        r.read_via
    );
    for l in &r.layers {
        println!(
            "  {:>3} {:<7} {:<7} {:>10}  {}",
            l.index,
            l.kind,
            l.action,
            mib(l.size),
            l.digest
        );
    }
    for (what, map) in [
        ("dropped", &r.policy.dropped),
        ("remapped", &r.policy.remapped),
    ] {
        for (k, v) in map {
            println!(
                "{what} {k}: {} entries, e.g. {}",
                v.count,
                v.examples.join(", ")
            );
        }
    }
}

pub fn etc_report(r: Option<&ostree_bridge_hooks::etc_merge::EtcReport>) {
    let Some(r) = r else { return };
    let line = |what: &str, v: &[String]| {
        if !v.is_empty() {
            println!(
                "/etc {what}: {}",
                v.iter()
                    .map(|p| format!("/etc/{p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    };
    line("local changes kept", &r.kept_local);
    line("changes from the image", &r.from_image);
    line("conflicts (local version kept)", &r.conflicts);
}
