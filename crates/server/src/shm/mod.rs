//! Triton's system shared memory extension: clients on the same host register regions of POSIX
//! shared memory objects and name them in place of tensor data, for inputs and outputs alike.
//! Off unless the server runs with `--allow-client-shm`, since it lets a local process hand the
//! server memory to read and write.

mod region;
mod tensors;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub use region::Region;
pub use tensors::{BYTE_SIZE, OFFSET, OutputRegions, REGION, ShmRef};

use crate::ApiError;

pub const FLAG: &str = "--allow-client-shm";

/// The regions registered with this server, shared by both front ends.
#[derive(Debug, Default)]
pub struct SharedMemory {
    allowed: bool,
    regions: RwLock<BTreeMap<String, Arc<Region>>>,
}

impl SharedMemory {
    pub fn new(allowed: bool) -> SharedMemory {
        SharedMemory {
            allowed,
            regions: RwLock::default(),
        }
    }

    fn check_allowed(&self) -> Result<(), ApiError> {
        if self.allowed {
            Ok(())
        } else {
            Err(ApiError::new(
                inferd_runtime::ErrorKind::PermissionDenied,
                format!(
                    "system shared memory is off on this server; start it with {FLAG} to let \
                     local clients pass tensors through shared memory"
                ),
            ))
        }
    }

    pub fn register(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        byte_size: u64,
    ) -> Result<(), ApiError> {
        self.check_allowed()?;
        if name.is_empty() {
            return Err(ApiError::bad_request("a shared memory region needs a name"));
        }
        // Mapped before the lock is taken; a lost race is refused below and unmapped on drop.
        let region = Region::map(name, key, offset, byte_size).map_err(|e| {
            ApiError::bad_request(format!(
                "failed to register shared memory region '{name}': {e}"
            ))
        })?;
        let mut regions = self.regions.write().unwrap_or_else(|p| p.into_inner());
        if regions.contains_key(name) {
            return Err(ApiError::bad_request(format!(
                "shared memory region '{name}' already in manager; unregister it first"
            )));
        }
        tracing::info!(
            region = name,
            key,
            offset,
            byte_size,
            "registered system shared memory"
        );
        regions.insert(name.to_string(), Arc::new(region));
        Ok(())
    }

    /// Unregisters `name`, or every region when `None`. Requests using a region keep it mapped
    /// until they finish. Unknown names are not an error (Triton's behaviour: cleanup is
    /// idempotent).
    pub fn unregister(&self, name: Option<&str>) -> Result<(), ApiError> {
        self.check_allowed()?;
        let mut regions = self.regions.write().unwrap_or_else(|p| p.into_inner());
        match name {
            Some(name) => {
                regions.remove(name);
            }
            None => regions.clear(),
        }
        Ok(())
    }

    /// The regions named (all when `None`), in name order.
    pub fn status(&self, name: Option<&str>) -> Result<Vec<Arc<Region>>, ApiError> {
        self.check_allowed()?;
        let regions = self.regions.read().unwrap_or_else(|p| p.into_inner());
        match name {
            None => Ok(regions.values().cloned().collect()),
            Some(name) => Ok(vec![self.lookup(&regions, name)?]),
        }
    }

    fn lookup(
        &self,
        regions: &BTreeMap<String, Arc<Region>>,
        name: &str,
    ) -> Result<Arc<Region>, ApiError> {
        regions.get(name).cloned().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Unable to find system shared memory region: '{name}'; register it first"
            ))
        })
    }

    /// The region a tensor names, held for the request's lifetime.
    pub fn get(&self, name: &str) -> Result<Arc<Region>, ApiError> {
        self.check_allowed()?;
        let regions = self.regions.read().unwrap_or_else(|p| p.into_inner());
        self.lookup(&regions, name)
    }
}

/// The regions a request may name: `None` where requests cannot reach shared memory.
pub fn usable(shm: Option<&SharedMemory>) -> Result<&SharedMemory, ApiError> {
    shm.ok_or_else(|| {
        ApiError::bad_request(
            "shared memory parameters are only taken by the HTTP and gRPC front ends; send the \
             tensor's data in the message",
        )
    })
}

/// CUDA shared memory needs a GPU memory manager this server does not have.
pub fn cuda_unsupported() -> ApiError {
    ApiError::new(
        inferd_runtime::ErrorKind::InvalidArgument,
        "CUDA shared memory is not supported on this server; use system shared memory \
         (/v2/systemsharedmemory, with --allow-client-shm) or send tensors in the request",
    )
}
