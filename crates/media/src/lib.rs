//! Keyframe's media plumbing: where videos and artifacts are stored, how an upload is
//! recognised as a video, and what ffprobe and ffmpeg find in it.
//!
//! Nothing here knows about HTTP, NATS or the event store: the API uses [`storage`],
//! [`container`] and [`probe`] for uploads; the worker uses [`analysis`] and [`clips`].

pub mod analysis;
pub mod clips;
pub mod container;
pub mod ffmpeg;
pub mod highlights;
pub mod probe;
pub mod shots;
pub mod signals;
pub mod storage;
pub mod stretches;
pub mod thumbnails;
