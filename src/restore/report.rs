//! What a restore run reports: per image (status, output, the pipeline's trace, seconds)
//! and for the whole run; written as `report.json` and read back by `report merge`/`html`.

use super::pipeline::{ImageTrace, StageTimes};
use super::preset::Preset;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    pub input: PathBuf,
    pub output: Option<PathBuf>,
    pub status: String,
    pub seed: u64,
    /// The device whose batch restored (or failed) the image (`cpu`, `cuda:1`, `cpu:0` of a
    /// CPU list); none for images no batch ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<ImageTrace>,
    pub notes: Vec<String>,
    pub seconds: Option<StageTimes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whole photos: the detected faces and what became of each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo: Option<crate::face::photo_run::PhotoReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub device: String,
    pub weights: PathBuf,
    pub preset: Preset,
    pub sampler: String,
    /// Where the sampler's update ran: "host", or "device" with whether the step graph was
    /// replayed from a recording (and why not).
    pub step: String,
    pub batch: usize,
    pub images: Vec<ImageReport>,
    pub restored: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Images not attempted because the run stopped (device lost, disk full).
    pub not_run: usize,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub seconds: f64,
    /// The part of the input list this run restored (`--shard`, or the scheduler's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::restore::shard::ShardInfo>,
    /// Devices of a device list that were lost during the run, in the order they were lost.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_devices: Vec<LostDevice>,
}

/// A device lost during a run, and what became of the batch it was running.
#[derive(Clone, Debug, Serialize)]
pub struct LostDevice {
    pub device: String,
    /// Which of this device's batches it was (1-based).
    pub batch: u64,
    pub error: String,
    /// The batch's images, given back to the queue for the other devices; empty when it
    /// was the last device (the images are then reported failed and the run stopped).
    pub requeued: Vec<PathBuf>,
}

impl RunReport {
    pub fn exit_code(&self) -> i32 {
        i32::from(self.failed > 0 || self.not_run > 0)
    }
}

impl ImageReport {
    pub(crate) fn new(input: &Path, seed: u64, status: &str) -> Self {
        ImageReport {
            input: input.to_path_buf(),
            output: None,
            status: status.to_string(),
            seed,
            device: None,
            trace: None,
            notes: vec![],
            seconds: None,
            error: None,
            photo: None,
        }
    }

    pub(crate) fn with_output(mut self, out: PathBuf) -> Self {
        self.output = Some(out);
        self
    }

    /// Marks the image failed (whatever the status was) with `error`.
    pub(crate) fn with_error(mut self, error: String) -> Self {
        if self.status != "not run" {
            self.status = "failed".into();
        }
        self.error = Some(error);
        self
    }
}
