//! gRPC's shared memory RPCs over the server's region registry.

use tonic::Status;

use crate::pb;
use crate::shm::{SharedMemory, cuda_unsupported};

fn name(n: &str) -> Option<&str> {
    (!n.is_empty()).then_some(n)
}

pub fn status(
    shm: &SharedMemory,
    request: pb::SystemSharedMemoryStatusRequest,
) -> Result<pb::SystemSharedMemoryStatusResponse, Status> {
    use pb::system_shared_memory_status_response::RegionStatus;
    let regions = shm
        .status(name(&request.name))?
        .into_iter()
        .map(|r| {
            let status = RegionStatus {
                name: r.name.clone(),
                key: r.key.clone(),
                offset: r.offset,
                byte_size: r.byte_size,
            };
            (r.name.clone(), status)
        })
        .collect();
    Ok(pb::SystemSharedMemoryStatusResponse { regions })
}

pub fn register(
    shm: &SharedMemory,
    r: pb::SystemSharedMemoryRegisterRequest,
) -> Result<pb::SystemSharedMemoryRegisterResponse, Status> {
    shm.register(&r.name, &r.key, r.offset, r.byte_size)?;
    Ok(pb::SystemSharedMemoryRegisterResponse {})
}

pub fn unregister(
    shm: &SharedMemory,
    r: pb::SystemSharedMemoryUnregisterRequest,
) -> Result<pb::SystemSharedMemoryUnregisterResponse, Status> {
    shm.unregister(name(&r.name))?;
    Ok(pb::SystemSharedMemoryUnregisterResponse {})
}

/// Every CUDA shared memory RPC: refused, saying what to use instead.
pub fn cuda<T>() -> Result<T, Status> {
    Err(cuda_unsupported().into())
}
