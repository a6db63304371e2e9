//! flyteidl wire types, generated at build time from the pinned `@flyteorg/flyteidl` package.
//!
//! No hand-written logic lives here. Every protobuf map is a `BTreeMap`, so
//! `prost::Message::encode_to_vec` is deterministic (registry digests rely on it).
//! The tonic clients and servers are behind the `grpc` feature.
#![allow(clippy::all, missing_docs, unreachable_pub, rustdoc::all)]

/// The flyteidl release the schema was compiled from.
pub const FLYTEIDL_VERSION: &str = "1.16.5";

/// The compiled `FileDescriptorSet` of the whole schema (for reflection and proto-JSON).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flyteidl.fds.bin"));

pub mod flyteidl {
    pub mod core {
        include!(concat!(env!("OUT_DIR"), "/flyteidl.core.rs"));
    }
    pub mod admin {
        include!(concat!(env!("OUT_DIR"), "/flyteidl.admin.rs"));
    }
    pub mod event {
        include!(concat!(env!("OUT_DIR"), "/flyteidl.event.rs"));
    }
    pub mod service {
        include!(concat!(env!("OUT_DIR"), "/flyteidl.service.rs"));
    }
    pub mod cacheservice {
        include!(concat!(env!("OUT_DIR"), "/flyteidl.cacheservice.rs"));
    }
    pub mod plugins {
        include!(concat!(env!("OUT_DIR"), "/flyteidl.plugins.rs"));
        pub mod kubeflow {
            include!(concat!(env!("OUT_DIR"), "/flyteidl.plugins.kubeflow.rs"));
        }
    }
}

pub mod datacatalog {
    include!(concat!(env!("OUT_DIR"), "/datacatalog.rs"));
}

pub mod google {
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    }
}

pub use flyteidl::{admin, core, event, service};
