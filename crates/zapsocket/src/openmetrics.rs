//! The one way `/metrics` is written in this workspace: metric families read at one
//! scrape, written with [`prometheus_client`]'s encoder in the OpenMetrics text format
//! (what Prometheus scrapes).
//!
//! The counts are snapshots ([`MetricsSnapshot`](crate::MetricsSnapshot), the realtime
//! hub's `Metrics`...), not live metric objects: each is a
//! [`Collector`] that writes its families with [`Families`] when encoded.
//! [`encode`] puts any number of them in one exposition, which ends with its one
//! `# EOF`; serve it with [`CONTENT_TYPE`].
//!
//! ```
//! use zapsocket::openmetrics::{self, Families};
//! use zapsocket::openmetrics::prometheus_client::{collector::Collector, encoding::DescriptorEncoder};
//!
//! #[derive(Debug)]
//! struct Jobs {
//!     done: u64,
//!     waiting: u64,
//! }
//!
//! impl Collector for Jobs {
//!     fn encode(&self, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
//!         let mut families = Families::new(encoder);
//!         families.counter("jobs_done", "Jobs done.", self.done)?;
//!         families.gauge("jobs_waiting", "Jobs waiting now.", self.waiting)
//!     }
//! }
//!
//! let text = openmetrics::encode(vec![Box::new(Jobs { done: 3, waiting: 1 })]);
//! assert_eq!(
//!     text,
//!     concat!(
//!         "# HELP jobs_done Jobs done.\n",
//!         "# TYPE jobs_done counter\n",
//!         "jobs_done_total 3\n",
//!         "# HELP jobs_waiting Jobs waiting now.\n",
//!         "# TYPE jobs_waiting gauge\n",
//!         "jobs_waiting 1\n",
//!         "# EOF\n",
//!     )
//! );
//! ```

use std::fmt;

/// The `prometheus-client` this crate encodes with (its [`Collector`] trait and
/// [`Registry`] to put these families with your own).
pub use prometheus_client;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelValue, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the OpenMetrics text format, for a `/metrics` response.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One exposition of `collectors`' families, in the order given: the OpenMetrics text,
/// ending with its one `# EOF`.
pub fn encode(collectors: Vec<Box<dyn Collector>>) -> String {
    let mut registry = Registry::default();
    for collector in collectors {
        registry.register_collector(collector);
    }
    let mut text = String::new();
    // Writing to a String does not fail, and nor do the collectors of this workspace.
    let encoded = prometheus_client::encoding::text::encode(&mut text, &registry);
    debug_assert!(encoded.is_ok(), "{encoded:?}");
    text
}

/// The value of a family with one sample: a counter's (its sample is `NAME_total`) or a
/// gauge's (`NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A count since start.
    Counter(u64),
    /// A level now.
    Gauge(u64),
}

/// Writes metric families through the [`DescriptorEncoder`] a [`Collector`] is given.
/// Names are the families' names: a counter family is named without `_total`, which
/// its sample gets (OpenMetrics). Help texts are written as they are.
#[derive(Debug)]
pub struct Families<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl<'a> Families<'a> {
    /// Families written through `encoder`.
    pub fn new(encoder: DescriptorEncoder<'a>) -> Self {
        Families { encoder }
    }

    /// A counter: `NAME_total VALUE`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.value(name, help, Value::Counter(value))
    }

    /// A gauge: `NAME VALUE`.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.value(name, help, Value::Gauge(value))
    }

    /// A counter or a gauge, as `value` says.
    pub fn value(&mut self, name: &str, help: &str, value: Value) -> fmt::Result {
        match value {
            Value::Counter(n) => {
                let counter = ConstCounter::new(n);
                counter.encode(self.encoder.encode_descriptor(name, help, None, counter.metric_type())?)
            }
            Value::Gauge(n) => {
                let gauge = ConstGauge::new(n);
                gauge.encode(self.encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
            }
        }
    }

    /// A counter per value of the label `label`: `NAME_total{LABEL="VALUE"} COUNT`, in the
    /// order given (no sample at all when there is none).
    pub fn labelled_counters<V: EncodeLabelValue>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        counts: impl IntoIterator<Item = (V, u64)>,
    ) -> fmt::Result {
        let mut family = self.encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (value, count) in counts {
            let labels = [(label, value)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A histogram: `counts[i]` observations of at most `bounds[i]` and more than the
    /// bound before, and a last count (one more than there are bounds) for the rest
    /// (`+Inf`). Written with the cumulative buckets, their count and `sum`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) -> fmt::Result {
        debug_assert_eq!(counts.len(), bounds.len() + 1, "{name}: a count per bound, and the rest");
        let buckets: Vec<(f64, u64)> =
            bounds.iter().copied().chain([f64::INFINITY]).zip(counts.iter().copied()).collect();
        let count = counts.iter().sum();
        let mut family = self.encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        family.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}
