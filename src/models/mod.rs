//! Network definitions built on the graph.

pub mod unet;
