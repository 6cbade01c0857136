//! Process CPU, memory, threads and file descriptors under the standard `process_*` names,
//! read from /proc at scrape time (Linux; elsewhere nothing is exported).

use std::collections::HashMap;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

const METRICS: &[(&str, &str, MetricType)] = &[
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds",
        MetricType::COUNTER,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        MetricType::GAUGE,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes",
        MetricType::GAUGE,
    ),
    (
        "process_open_fds",
        "Number of open file descriptors",
        MetricType::GAUGE,
    ),
    (
        "process_threads",
        "Number of OS threads in the process",
        MetricType::GAUGE,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds",
        MetricType::GAUGE,
    ),
];

pub struct ProcessCollector {
    descs: Vec<Desc>,
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        let descs = METRICS
            .iter()
            .map(|(name, help, _)| {
                Desc::new(name.to_string(), help.to_string(), vec![], HashMap::new())
                    .expect("static metric descriptions are valid")
            })
            .collect();
        ProcessCollector { descs }
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(values) = read() else {
            return Vec::new();
        };
        METRICS
            .iter()
            .zip(values)
            .map(|((name, help, kind), value)| {
                let mut metric = proto::Metric::default();
                if *kind == MetricType::COUNTER {
                    let mut c = proto::Counter::default();
                    c.set_value(value);
                    metric.set_counter(c);
                } else {
                    let mut g = proto::Gauge::default();
                    g.set_value(value);
                    metric.set_gauge(g);
                }
                let mut family = MetricFamily::default();
                family.set_name(name.to_string());
                family.set_help(help.to_string());
                family.set_field_type(*kind);
                family.set_metric(vec![metric]);
                family
            })
            .collect()
    }
}

/// The values of METRICS in order, from /proc/self/stat (fields per proc(5)).
#[cfg(target_os = "linux")]
fn read() -> Option<[f64; 6]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields after it start at "state" (field 3).
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    // SAFETY: sysconf only reads a constant of the running system.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    Some([
        (field(14)? + field(15)?) / ticks,
        field(24)? * page,
        field(23)?,
        fds,
        field(20)?,
        boot + field(22)? / ticks,
    ])
}

#[cfg(not(target_os = "linux"))]
fn read() -> Option<[f64; 6]> {
    None
}
