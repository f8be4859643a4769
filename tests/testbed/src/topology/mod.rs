//! Ready-made topologies built from [`crate::Netns`] and [`crate::link`].

pub mod forward;
pub mod overlay;
pub mod sites;
pub mod triangle;
pub mod zoo;
