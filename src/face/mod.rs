//! Whole photos: face detection, alignment to the FFHQ-512 template, and paste-back of
//! the restored faces. The method layer (`restore`) only ever sees aligned 512² faces.

pub mod align;
pub mod detect;
pub mod paste;
pub mod photo;
pub mod photo_run;
