//! The worker protocol's framing and tensor encoding (described in worker.py).

use std::io::{Read, Write};

use inferd_core::{DataType, Tensor, TensorData};

pub fn write_message(out: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("a message over 4 GiB cannot go to the worker"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(payload)?;
    out.flush()
}

/// Largest answer accepted from a worker; anything bigger means the stream is corrupt.
const MAX_MESSAGE: usize = 1 << 31;

pub fn read_message(input: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other(format!(
            "the worker announced a {len}-byte message: its output is corrupt"
        )));
    }
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload)?;
    Ok(payload)
}

pub fn encode(tensors: &[(&str, &Tensor)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(tensors.len() as u32).to_le_bytes());
    for (name, tensor) in tensors {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        let datatype = tensor.datatype().as_str();
        out.push(datatype.len() as u8);
        out.extend_from_slice(datatype.as_bytes());
        out.push(tensor.shape().len() as u8);
        for d in tensor.shape() {
            out.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        out.extend_from_slice(&(tensor.data().le_byte_len() as u64).to_le_bytes());
        tensor.data().write_le_bytes(&mut out);
    }
    out
}

/// Reads what `encode` (or the worker's encoder) wrote; every length is checked.
pub fn decode(payload: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let mut at = payload;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if at.len() < n {
            return Err("the worker's answer is truncated".into());
        }
        let (head, rest) = at.split_at(n);
        at = rest;
        Ok(head)
    };
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let count = u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4]));
    let mut tensors = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let n = u16::from_le_bytes(take(2)?.try_into().unwrap_or([0; 2])) as usize;
        let name = String::from_utf8_lossy(take(n)?).into_owned();
        let n = take(1)?[0] as usize;
        let datatype: DataType = std::str::from_utf8(take(n)?)
            .map_err(|e| e.to_string())?
            .parse()
            .map_err(|e| format!("output '{name}': {e}"))?;
        let rank = take(1)?[0] as usize;
        let shape = (0..rank)
            .map(|_| take(8).map(|b| u64_at(b) as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let size = take(8).map(u64_at)? as usize;
        let data = TensorData::from_le_bytes(datatype, take(size)?)
            .map_err(|e| format!("output '{name}': {e}"))?;
        let tensor = Tensor::new(shape, data).map_err(|e| format!("output '{name}': {e}"))?;
        tensors.push((name, tensor));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip() {
        let a = Tensor::new(vec![2, 2], TensorData::F32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
        let b = Tensor::new(
            vec![2],
            TensorData::Bytes(vec![b"x".to_vec(), b"yz".to_vec()]),
        )
        .unwrap();
        let encoded = encode(&[("a", &a), ("b", &b)]);
        let decoded = decode(&encoded).unwrap();
        assert_eq!(decoded, vec![("a".to_string(), a), ("b".to_string(), b)]);
        assert!(decode(&encoded[..encoded.len() - 1]).is_err());
    }
}
