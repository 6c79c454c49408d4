//! `dynface report ...`: working with the JSON reports `dynface restore` writes.

pub mod html;
pub mod merge;

pub use html::{run_html, write_html, HtmlArgs, HtmlSummary};
pub use merge::{run_merge, MergeArgs, MergeSummary};
