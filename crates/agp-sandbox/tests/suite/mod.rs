mod cgroup;
mod env_leak;
mod escape;
mod git_metadata;
mod limits;
mod preflight;
mod privilege;
mod support;
