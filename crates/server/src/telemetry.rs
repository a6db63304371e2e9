//! Prometheus metrics: the recorder every crate's `metrics::` calls report to, and the
//! text served at `/metrics`.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Buckets of the latency histograms, in seconds: 100 µs to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Installs the process-wide recorder (once; later calls return `None`).
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .ok()?
        .install_recorder()
        .ok()
}

/// The Prometheus text: refreshes the gauges read at scrape time first.
pub fn render(handle: &PrometheusHandle, refresh: &(dyn Fn() + Send + Sync)) -> String {
    refresh();
    if let Some(rss) = resident_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(rss as f64);
    }
    if let Some(fds) = open_fds() {
        metrics::gauge!("process_open_fds").set(fds as f64);
    }
    handle.run_upkeep();
    handle.render()
}

/// Resident set size, from `/proc/self/status` (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// Open file descriptors, from `/proc/self/fd` (Linux).
fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_from_proc() {
        assert!(resident_bytes().unwrap() > 1 << 20);
        let before = open_fds().unwrap();
        let _f = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(open_fds().unwrap(), before + 1);
    }
}
