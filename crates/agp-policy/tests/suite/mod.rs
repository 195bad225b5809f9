mod adversarial;
mod corpus;
mod engine;
mod expansion;
mod monotonic;
mod robustness;
mod runner_models;
mod support;
