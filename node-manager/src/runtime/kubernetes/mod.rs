//! The Kubernetes backend: slivers of ONE Kubernetes node run as Pods, through kube. A slice
//! is a namespace per node it has slivers on (quota, limit range, isolating network policies),
//! a sliver a Pod pinned to the node. Labels are the source of truth, as Docker labels are:
//! a restarted agent adopts every Pod it finds. This module must never touch an object without
//! this node's labels, nor another node's Pods.

mod access;
mod backend;
pub mod client;
mod copy;
pub mod names;
pub mod nodes;
pub mod objects;
pub mod observe;
pub mod pod;
mod pull_secret;
mod slice;

pub use backend::KubeRuntime;
pub use client::NodeFacts;
