//! The worker protocol's framing and tensor encoding (described in worker.py).

use std::io::{Read, Write};

use bytes::Bytes;
use inferd_core::{DataType, Tensor};

/// Largest answer accepted from a worker; anything bigger means the stream is corrupt.
const MAX_MESSAGE: usize = 1 << 31;

/// Writes one request: the tensors' headers, then each tensor's bytes straight from its chunks.
pub fn write_tensors(out: &mut impl Write, tensors: &[(&str, &Tensor)]) -> std::io::Result<()> {
    let mut heads = Vec::with_capacity(tensors.len());
    let mut total = 4;
    for (name, tensor) in tensors {
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(&(name.len() as u16).to_le_bytes());
        head.extend_from_slice(name.as_bytes());
        let datatype = tensor.datatype().as_str();
        head.push(datatype.len() as u8);
        head.extend_from_slice(datatype.as_bytes());
        head.push(tensor.shape().len() as u8);
        for d in tensor.shape() {
            head.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        head.extend_from_slice(&(tensor.byte_len() as u64).to_le_bytes());
        total += head.len() + tensor.byte_len();
        heads.push(head);
    }
    let total = u32::try_from(total)
        .map_err(|_| std::io::Error::other("a message over 4 GiB cannot go to the worker"))?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(&(tensors.len() as u32).to_le_bytes())?;
    for (head, (_, tensor)) in heads.iter().zip(tensors) {
        out.write_all(head)?;
        for chunk in tensor.chunks() {
            out.write_all(chunk)?;
        }
    }
    out.flush()
}

pub fn read_message(input: &mut impl Read) -> std::io::Result<Bytes> {
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
    Ok(Bytes::from(payload))
}

/// Reads what the worker's encoder wrote; every length is checked. The tensors are slices of
/// `payload`, not copies.
pub fn decode(payload: &Bytes) -> Result<Vec<(String, Tensor)>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<Bytes, String> {
        if payload.len() - at < n {
            return Err("the worker's answer is truncated".into());
        }
        at += n;
        Ok(payload.slice(at - n..at))
    };
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let count = u32::from_le_bytes(take(4)?[..].try_into().unwrap_or([0; 4]));
    let mut tensors = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let n = u16::from_le_bytes(take(2)?[..].try_into().unwrap_or([0; 2])) as usize;
        let name = String::from_utf8_lossy(&take(n)?).into_owned();
        let n = take(1)?[0] as usize;
        let datatype: DataType = std::str::from_utf8(&take(n)?)
            .map_err(|e| e.to_string())?
            .parse()
            .map_err(|e| format!("output '{name}': {e}"))?;
        let rank = take(1)?[0] as usize;
        let shape = (0..rank)
            .map(|_| take(8).map(|b| u64_at(&b) as usize))
            .collect::<Result<Vec<_>, _>>()?;
        let size = usize::try_from(u64_at(&take(8)?)).map_err(|e| e.to_string())?;
        let data = take(size)?;
        let tensor = Tensor::from_wire(datatype, shape, vec![data])
            .map_err(|e| format!("output '{name}': {e}"))?;
        tensors.push((name, tensor));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_core::TensorData;

    #[test]
    fn tensors_round_trip() {
        let a = Tensor::new(vec![2, 2], TensorData::F32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
        let b = Tensor::new(
            vec![2],
            TensorData::Bytes(vec![b"x".to_vec(), b"yz".to_vec()]),
        )
        .unwrap();
        let mut message = Vec::new();
        write_tensors(&mut message, &[("a", &a), ("b", &b)]).unwrap();
        let payload = read_message(&mut &message[..]).unwrap();
        let decoded = decode(&payload).unwrap();
        assert_eq!(decoded, vec![("a".to_string(), a), ("b".to_string(), b)]);
        assert!(decode(&payload.slice(..payload.len() - 1)).is_err());
    }
}
