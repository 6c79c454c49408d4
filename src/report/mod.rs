//! Working with the JSON reports `dynface restore` writes: merging shard reports, the HTML
//! page (the `dynface report` commands are `cli/report.rs`).

pub mod html;
pub mod merge;

pub use html::{run_html, write_html, HtmlOptions, HtmlSummary};
pub use merge::{run_merge, MergeOptions, MergeSummary};
