//! The slicebed.v1 gRPC contract, generated from `proto/slicebed/v1/*.proto`.
//! Besides generated code and the descriptor set for server reflection, it holds the one
//! client-side bearer interceptor ([`auth::Bearer`]) every client uses.

pub mod auth;

/// Package `slicebed.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("slicebed.v1");

    /// Encoded `FileDescriptorSet` of the package, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/slicebed_descriptor.bin"));
}

pub use prost_types;
