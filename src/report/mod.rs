//! `dynface report ...`: working with the JSON reports `dynface restore` writes.

pub mod merge;

pub use merge::{run_merge, MergeArgs, MergeSummary};
