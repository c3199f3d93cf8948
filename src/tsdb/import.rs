//! `lookout tsdb import`: backfills an OpenMetrics text file (with timestamps, ending in
//! `# EOF`, as `promtool tsdb create-blocks-from openmetrics` reads) into blocks.
