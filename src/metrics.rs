//! Prometheus metrics shared by both controllers (label `controller`: `organization` or
//! `invitation`): reconciles, errors by reason, reconcile durations, API writes by
//! resource, and whether this replica leads. Served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The `reason` label of a failed Kubernetes API call.
pub fn kube_error_reason(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) if status.code == 409 => "Conflict",
        kube::Error::Api(status) if status.code == 403 => "Forbidden",
        _ => "KubeApi",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub resource: String,
    pub verb: String,
}

/// The label of a cache's figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: String,
}

/// What one cache holds: its objects, and their size as JSON (as kept: stripped and
/// compacted), a measure of the memory it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheCost {
    pub cache: &'static str,
    pub objects: usize,
    pub json_bytes: usize,
}

/// Measures every cache of the process, when `/metrics` is read.
pub type CacheMeter = std::sync::Arc<dyn Fn() -> Vec<CacheCost> + Send + Sync>;

/// The controllers' metrics; cheap to clone (shared counters).
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ControllerLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub durations: Family<ControllerLabels, Histogram>,
    pub api_writes: Family<WriteLabels, Counter>,
    /// The sum of `api_writes` over every label.
    pub total_writes: Counter,
    /// 1 while this replica leads (or runs without leader election).
    pub leader: Gauge,
    pub cache_objects: Family<CacheLabels, Gauge>,
    pub cache_json_bytes: Family<CacheLabels, Gauge>,
    /// Set while the caches exist (the access controller runs): measuring walks every
    /// cached object, so it happens only when the figures are read.
    cache_meter: std::sync::Arc<std::sync::Mutex<Option<CacheMeter>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Family::default(),
            errors: Family::default(),
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            api_writes: Family::default(),
            total_writes: Counter::default(),
            leader: Gauge::default(),
            cache_objects: Family::default(),
            cache_json_bytes: Family::default(),
            cache_meter: Default::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `kube_org_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("kube_org");
        registry.register("reconciles", "Reconciles run", self.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by reason",
            self.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            self.durations.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests sent to the Kubernetes API, by resource and verb",
            self.api_writes.clone(),
        );
        registry.register(
            "api_writes_all",
            "Write requests sent to the Kubernetes API, all resources",
            self.total_writes.clone(),
        );
        registry.register(
            "cache_objects",
            "Objects held by each watch cache (measured when read)",
            self.cache_objects.clone(),
        );
        registry.register(
            "cache_json_bytes",
            "Size as JSON of the objects each watch cache holds, stripped and compacted as kept (measured when read)",
            self.cache_json_bytes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica leads (or runs without leader election)",
            self.leader.clone(),
        );
    }

    /// Runs one reconcile of `controller`, counting it and timing it.
    pub async fn reconcile<T>(&self, controller: &str, reconcile: impl Future<Output = T>) -> T {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        let started = std::time::Instant::now();
        let result = reconcile.await;
        self.durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Counts one failed reconcile of `controller`.
    pub fn reconcile_failed(&self, controller: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                controller: controller.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts one write request to the API.
    pub fn write(&self, resource: &str, verb: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                resource: resource.to_string(),
                verb: verb.to_string(),
            })
            .inc();
        self.total_writes.inc();
    }

    /// Sets (or, with `None`, clears) what measures the caches.
    pub fn measure_caches_with(&self, meter: Option<CacheMeter>) {
        *self.cache_meter.lock().unwrap_or_else(|p| p.into_inner()) = meter;
    }

    /// Updates the cache figures, if there are caches to measure.
    pub fn measure_caches(&self) {
        let meter = self
            .cache_meter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for cost in meter.map(|m| m()).unwrap_or_default() {
            let labels = CacheLabels {
                cache: cost.cache.to_string(),
            };
            self.cache_objects
                .get_or_create(&labels)
                .set(cost.objects as i64);
            self.cache_json_bytes
                .get_or_create(&labels)
                .set(cost.json_bytes as i64);
        }
    }

    /// All API writes so far (what the benchmark and the quietness tests read).
    pub fn total_writes(&self) -> u64 {
        self.total_writes.get()
    }
}
