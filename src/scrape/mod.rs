//! Scraping Prometheus targets (issue 5, DESIGN §7). So far: [`exposition`], the text
//! format 0.0.4 and OpenMetrics 1.0 parsed into samples with line-and-column errors, and
//! [`relabel`], Prometheus' relabelling. The scrape loop and its configuration come next.

pub mod exposition;
pub mod relabel;
