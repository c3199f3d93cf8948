//! Scraping Prometheus targets (issue 5, DESIGN §7): [`exposition`], the text format
//! 0.0.4 and OpenMetrics 1.0 parsed into samples with line-and-column errors;
//! [`relabel`], Prometheus' relabelling; [`target`], jobs with Prometheus'
//! `scrape_configs` field names, their targets, and one scrape of one target. The scrape
//! loop (intervals, staleness markers, `/api/v1/targets`) comes next.

pub mod exposition;
pub mod relabel;
pub mod target;
