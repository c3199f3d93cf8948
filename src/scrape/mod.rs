//! Scraping Prometheus targets (issue 5, DESIGN §7): [`exposition`], the text format
//! 0.0.4 and OpenMetrics 1.0 parsed into samples with line-and-column errors; [`target`],
//! jobs with Prometheus' `scrape_configs` field names, their targets, and one scrape of
//! one target (`relabel_configs` and `metric_relabel_configs` run on [`crate::relabel`]);
//! [`manager`], the scrape loop with staleness markers, target health and file_sd
//! targets; [`prometheus_yml`], an existing `prometheus.yml` read as-is; [`import`], an
//! OpenMetrics file backfilled into TSDB blocks (`lookout tsdb import`).

pub mod exposition;
pub mod import;
pub mod manager;
pub mod prometheus_yml;
pub mod target;
