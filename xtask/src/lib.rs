//! Build tasks (library part, so the deployment tests can call the packager directly).

pub mod package;
