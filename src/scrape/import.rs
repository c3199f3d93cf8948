//! `lookout tsdb import`: backfills an OpenMetrics text file — every sample with a
//! timestamp, ending in `# EOF`, the input of `promtool tsdb create-blocks-from
//! openmetrics` — into blocks aligned to the block duration.
//!
//! The data directory's lock decides how: when no server holds it, the import takes it
//! for its run; when a server does, the import touches nothing the server owns (the
//! head, the log) and only adds immutable blocks, each written under a temporary name
//! and renamed into `tsdb/blocks/`, which the server picks up within a minute.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::exposition::{self, Format};
use crate::data_dir::{DataDir, DataDirError};
use crate::tsdb::head::Labels;

#[derive(Debug)]
pub struct ImportReport {
    pub blocks: usize,
    pub series: usize,
    pub samples: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// A running server held the data directory; it picks the blocks up.
    pub server_running: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}, column {column}: {message}")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("writing blocks into {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Lines parsed at once: the file is read in pieces so its size is not held twice.
const PIECE_BYTES: usize = 32 << 20;

pub fn import(
    data_dir: &Path,
    file: &Path,
    block_duration: Duration,
) -> Result<ImportReport, ImportError> {
    import_in_pieces(data_dir, file, block_duration, PIECE_BYTES)
}

fn import_in_pieces(
    data_dir: &Path,
    file: &Path,
    block_duration: Duration,
    piece_bytes: usize,
) -> Result<ImportReport, ImportError> {
    use std::io::BufRead;
    let path = file.display().to_string();
    let read_error = |source| ImportError::Read {
        path: path.clone(),
        source,
    };
    let mut reader =
        std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file).map_err(read_error)?);
    let mut series: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
    let mut piece = String::new();
    // the family header in force, carried into the next piece
    let mut family_header = String::new();
    let (mut line_number, mut piece_first_line, mut saw_eof) = (0usize, 1usize, false);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(read_error)?;
        if read > 0 {
            line_number += 1;
            if saw_eof && !line.trim().is_empty() {
                return Err(ImportError::Parse {
                    path,
                    line: line_number,
                    column: 1,
                    message: "content after `# EOF`".into(),
                });
            }
            if line.trim_end() == "# EOF" {
                saw_eof = true;
                continue;
            }
            if line.starts_with("# TYPE ") {
                family_header.clear();
                family_header.push_str(&line);
            }
            piece.push_str(&line);
        }
        if (read == 0 || piece.len() >= piece_bytes) && !piece.is_empty() {
            let carried =
                piece_first_line > 1 && !family_header.is_empty() && !piece.starts_with("# TYPE ");
            let mut text = String::with_capacity(piece.len() + family_header.len() + 8);
            if carried {
                text.push_str(&family_header);
            }
            text.push_str(&piece);
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("# EOF\n");
            let samples = exposition::parse(&text, Format::OpenMetrics).map_err(|error| {
                ImportError::Parse {
                    path: path.clone(),
                    line: (error.line + piece_first_line).saturating_sub(1 + usize::from(carried)),
                    column: error.column,
                    message: error.message.clone(),
                }
            })?;
            for sample in samples {
                if sample.created {
                    continue;
                }
                let Some(timestamp) = sample.timestamp_ms else {
                    return Err(ImportError::Invalid {
                        path,
                        message: format!(
                            "a sample of `{}` has no timestamp; backfilling needs one on every sample",
                            sample.name
                        ),
                    });
                };
                let mut labels = sample.labels;
                labels.push(("__name__".into(), sample.name));
                labels.sort();
                series
                    .entry(labels.into())
                    .or_default()
                    .push((timestamp, sample.value));
            }
            piece.clear();
            piece_first_line = line_number + 1;
        }
        if read == 0 {
            break;
        }
    }
    if !saw_eof {
        return Err(ImportError::Invalid {
            path,
            message:
                "an OpenMetrics file ends with a `# EOF` line; add it (the file may be truncated)"
                    .into(),
        });
    }
    let range = block_duration.as_millis().max(1) as i64;
    let mut by_block: HashMap<i64, crate::tsdb::head::Selected> = HashMap::new();
    let (mut min_time, mut max_time, mut total) = (i64::MAX, i64::MIN, 0u64);
    let series_count = series.len();
    for (labels, mut samples) in series {
        samples.sort_by_key(|(time, _)| *time);
        samples.dedup_by_key(|(time, _)| *time);
        total += samples.len() as u64;
        min_time = min_time.min(samples[0].0);
        max_time = max_time.max(samples[samples.len() - 1].0);
        let mut start = 0;
        while start < samples.len() {
            let block = samples[start].0.div_euclid(range);
            let end = start
                + samples[start..].partition_point(|(time, _)| time.div_euclid(range) == block);
            by_block
                .entry(block)
                .or_default()
                .push((labels.clone(), samples[start..end].to_vec()));
            start = end;
        }
    }
    let (lock, server_running) = match DataDir::open(data_dir) {
        Ok(lock) => (Some(lock), false),
        Err(DataDirError::Locked { .. }) => (None, true),
        Err(error) => return Err(error.into()),
    };
    let blocks_dir = data_dir.join("tsdb").join("blocks");
    let mut keys: Vec<i64> = by_block.keys().copied().collect();
    keys.sort_unstable();
    for key in &keys {
        let block_series = &by_block[key];
        crate::tsdb::block::write(
            &blocks_dir,
            block_series,
            key * range,
            (key + 1) * range,
            "import",
        )
        .map_err(|source| ImportError::Write {
            path: blocks_dir.display().to_string(),
            source,
        })?;
    }
    drop(lock);
    Ok(ImportReport {
        blocks: keys.len(),
        series: series_count,
        samples: total,
        min_time: if total == 0 { 0 } else { min_time },
        max_time: if total == 0 { 0 } else { max_time },
        server_running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openmetrics_file_becomes_aligned_blocks_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("backfill.om");
        let mut text = String::from("# TYPE http_requests counter\n");
        for step in 0..600 {
            // 15 s apart from 00:00, so 2.5 hours: two 2-hour blocks
            text.push_str(&format!(
                "http_requests_total{{code=\"200\"}} {} {}\n",
                step * 3,
                step * 15
            ));
        }
        text.push_str("# EOF\n");
        std::fs::write(&file, &text).expect("write");
        let report =
            import(&dir.path().join("data"), &file, Duration::from_secs(7200)).expect("import");
        assert_eq!((report.blocks, report.series, report.samples), (2, 1, 600));
        assert!(!report.server_running);
        let tsdb = crate::tsdb::Tsdb::open(
            &dir.path().join("data/tsdb"),
            crate::tsdb::TsdbOptions::default(),
        )
        .expect("open");
        let all = tsdb.select(&[], 0, i64::MAX);
        assert_eq!(all[0].1.len(), 600);
        assert_eq!(all[0].1[599], (599 * 15_000, 1797.0));
        assert_eq!(tsdb.label_values("__name__"), ["http_requests_total"]);
        assert_eq!(tsdb.label_names(), ["__name__", "code"]);

        // read in small pieces: the same result, errors at their real line
        let pieces = import_in_pieces(
            &dir.path().join("data2"),
            &file,
            Duration::from_secs(7200),
            200,
        )
        .expect("import");
        assert_eq!((pieces.blocks, pieces.series, pieces.samples), (2, 1, 600));
        let mut broken = text.replace("# EOF\n", "");
        broken.push_str("http_requests_total{code=\"200\" 1 9000\n# EOF\n");
        std::fs::write(&file, &broken).expect("write");
        let error = import_in_pieces(
            &dir.path().join("data3"),
            &file,
            Duration::from_secs(7200),
            200,
        )
        .expect_err("bad line");
        assert!(error.to_string().contains("line 602"), "{error}");

        std::fs::write(&file, "up 1 100\n").expect("write");
        let error =
            import(&dir.path().join("data"), &file, Duration::from_secs(7200)).expect_err("no EOF");
        assert!(error.to_string().contains("# EOF"), "{error}");
        std::fs::write(&file, "up 1\n# EOF\n").expect("write");
        let error = import(&dir.path().join("data"), &file, Duration::from_secs(7200))
            .expect_err("no timestamp");
        assert!(error.to_string().contains("no timestamp"), "{error}");
        std::fs::write(&file, "up{a=\"b\" 1 100\n# EOF\n").expect("write");
        let error = import(&dir.path().join("data"), &file, Duration::from_secs(7200))
            .expect_err("bad line");
        assert!(error.to_string().contains("line 1"), "{error}");
    }
}
