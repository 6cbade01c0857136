//! The audit log's own metrics: records written, dropped and failed, the queue's depth and how
//! long records wait to be written.

use std::collections::HashMap;
use std::sync::Arc;

use inferd_runtime::audit::Audit;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

const COUNTERS: &[(&str, &str)] = &[
    (
        "inferd_audit_records_written_total",
        "Audit records written to the log",
    ),
    (
        "inferd_audit_records_dropped_total",
        "Audit records dropped (--audit-when-full drop, or after close)",
    ),
    (
        "inferd_audit_records_failed_total",
        "Audit records the log could not write",
    ),
];
const QUEUE: (&str, &str) = (
    "inferd_audit_queue_depth",
    "Audit records waiting for the writer",
);
const LATENCY: (&str, &str) = (
    "inferd_audit_write_seconds",
    "Time from an audit record being queued to it being written",
);

pub struct AuditCollector {
    audit: Arc<Audit>,
    descs: Vec<Desc>,
}

impl AuditCollector {
    pub fn new(audit: Arc<Audit>) -> AuditCollector {
        let descs = COUNTERS
            .iter()
            .chain([&QUEUE, &LATENCY])
            .map(|(name, help)| {
                Desc::new(name.to_string(), help.to_string(), vec![], HashMap::new())
                    .expect("static metric descriptions are valid")
            })
            .collect();
        AuditCollector { audit, descs }
    }
}

fn family(name: &str, help: &str, kind: MetricType, metric: proto::Metric) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(vec![metric]);
    f
}

impl Collector for AuditCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = self.audit.stats();
        let mut out: Vec<MetricFamily> = COUNTERS
            .iter()
            .zip([s.written, s.dropped, s.failed])
            .map(|((name, help), value)| {
                let mut c = proto::Counter::default();
                c.set_value(value as f64);
                let mut m = proto::Metric::default();
                m.set_counter(c);
                family(name, help, MetricType::COUNTER, m)
            })
            .collect();
        let mut g = proto::Gauge::default();
        g.set_value(s.queued as f64);
        let mut m = proto::Metric::default();
        m.set_gauge(g);
        out.push(family(QUEUE.0, QUEUE.1, MetricType::GAUGE, m));
        out.push(family(
            LATENCY.0,
            LATENCY.1,
            MetricType::HISTOGRAM,
            super::models::histogram(vec![], &s.write_seconds),
        ));
        out
    }
}
