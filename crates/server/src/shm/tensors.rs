//! Tensors named by shared memory parameters (`shared_memory_region`, `shared_memory_byte_size`,
//! `shared_memory_offset`): inputs read from a region, outputs written into one.

use std::sync::Arc;

use inferd_core::{DataType, Tensor};
use inferd_runtime::{InferResponse, Parameter, Parameters};

use super::{Region, SharedMemory};
use crate::ApiError;

pub const REGION: &str = "shared_memory_region";
pub const BYTE_SIZE: &str = "shared_memory_byte_size";
pub const OFFSET: &str = "shared_memory_offset";

/// Where a tensor lies in a region, as its parameters say.
#[derive(Debug, Clone, PartialEq)]
pub struct ShmRef {
    pub region: String,
    pub byte_size: u64,
    pub offset: u64,
}

impl ShmRef {
    /// Whether parameters with these keys say anything of shared memory: decoders convert a
    /// tensor's wire parameters only then.
    pub fn mentioned(has: impl Fn(&str) -> bool) -> bool {
        [REGION, BYTE_SIZE, OFFSET].into_iter().any(has)
    }

    /// The reference in a tensor's parameters, if it names a region.
    pub fn from_parameters(parameters: &Parameters) -> Result<Option<ShmRef>, String> {
        let Some(region) = parameters.get(REGION) else {
            if parameters.contains_key(BYTE_SIZE) || parameters.contains_key(OFFSET) {
                return Err(format!("{BYTE_SIZE} and {OFFSET} need {REGION}"));
            }
            return Ok(None);
        };
        let Parameter::String(region) = region else {
            return Err(format!("{REGION} must be a region name (a string)"));
        };
        let count = |key: &str| -> Result<Option<u64>, String> {
            parameters
                .get(key)
                .map(|p| {
                    p.as_u64()
                        .ok_or_else(|| format!("{key} must be a non-negative byte count"))
                })
                .transpose()
        };
        let byte_size =
            count(BYTE_SIZE)?.ok_or_else(|| format!("{REGION} '{region}' needs {BYTE_SIZE}"))?;
        Ok(Some(ShmRef {
            region: region.clone(),
            byte_size,
            offset: count(OFFSET)?.unwrap_or(0),
        }))
    }
}

impl SharedMemory {
    /// An input's tensor, copied out of its region.
    pub fn input(
        &self,
        at: &ShmRef,
        datatype: DataType,
        shape: Vec<usize>,
    ) -> Result<Tensor, ApiError> {
        let region = self.get(&at.region)?;
        let bytes = region
            .read(at.offset, at.byte_size)
            .map_err(ApiError::bad_request)?;
        Tensor::from_wire(datatype, shape, vec![bytes])
            .map_err(|e| ApiError::bad_request(format!("{BYTE_SIZE} is {}: {e}", at.byte_size)))
    }

    /// Where a requested output is to be written; the region is held until the answer is.
    pub fn output(&self, at: ShmRef) -> Result<OutputRegion, ApiError> {
        let region = self.get(&at.region)?;
        // Checked now so a bad offset fails before the model runs.
        region
            .check(at.offset, at.byte_size)
            .map_err(ApiError::bad_request)?;
        Ok(OutputRegion { region, at })
    }
}

#[derive(Debug)]
pub struct OutputRegion {
    region: Arc<Region>,
    pub at: ShmRef,
}

/// The outputs of one request that go to shared memory instead of the answer.
#[derive(Debug, Default)]
pub struct OutputRegions(Vec<(String, OutputRegion)>);

impl OutputRegions {
    pub fn push(&mut self, output: String, region: OutputRegion) {
        self.0.push((output, region));
    }

    pub fn get(&self, output: &str) -> Option<&ShmRef> {
        self.0
            .iter()
            .find(|(name, _)| name == output)
            .map(|(_, r)| &r.at)
    }

    /// Writes each such output of `response` into its region.
    pub fn write(&self, response: &InferResponse) -> Result<(), ApiError> {
        for (name, out) in &self.0 {
            let Some(output) = response.outputs.iter().find(|o| &o.name == name) else {
                continue;
            };
            let len = output.tensor.byte_len() as u64;
            if len > out.at.byte_size {
                return Err(ApiError::bad_request(format!(
                    "output '{name}' is {len} bytes but {BYTE_SIZE} for region '{}' gives it {}",
                    out.at.region, out.at.byte_size
                )));
            }
            out.region
                .write(out.at.offset, output.tensor.chunks())
                .map_err(|e| ApiError::bad_request(format!("output '{name}': {e}")))?;
        }
        Ok(())
    }
}
