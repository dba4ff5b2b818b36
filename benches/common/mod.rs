//! What the criterion benchmarks share: one configuration, short enough that a full
//! `cargo bench` stays under two minutes on 2 cores (BENCHMARKS.md).

use std::time::Duration;

use criterion::Criterion;

/// One second of warm-up, two of measurement, 50 samples.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}
