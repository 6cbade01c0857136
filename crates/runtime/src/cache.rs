//! The response cache (Triton's `response_cache`, `--cache-size`): successful answers of models
//! that enable it, keyed by everything that decides the answer, least recently used evicted
//! first by bytes. Entries are found by a SHA-256 of the key, and the stored key bytes are
//! compared on every hit, so a hash collision can never return another request's answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::{InferRequest, InferResponse, Parameter};

/// Request parameters that change how an answer is scheduled or written, never what it is.
const NOT_IN_KEY: &[&str] = &[
    "priority",
    "timeout",
    "binary_data_output",
    "triton_enable_empty_final_response",
];

/// Bookkeeping each entry costs beyond its key and tensors.
const ENTRY_OVERHEAD: usize = 256;

/// The key of a request on one model version: every byte that decides its answer.
pub struct Key {
    bytes: Vec<u8>,
    hash: [u8; 32],
}

impl Key {
    /// `classification`: the outputs answered as their K best classes (taken out of the
    /// request before it runs).
    pub fn of(
        model: &str,
        version: u64,
        request: &InferRequest,
        classification: &BTreeMap<String, usize>,
    ) -> Key {
        let mut bytes = Vec::with_capacity(256);
        fn put(bytes: &mut Vec<u8>, b: &[u8]) {
            bytes.extend_from_slice(&(b.len() as u64).to_le_bytes());
            bytes.extend_from_slice(b);
        }
        put(&mut bytes, model.as_bytes());
        put(&mut bytes, &version.to_le_bytes());
        // Inputs by name: the same tensors sent in another order are the same request.
        let mut inputs: Vec<_> = request.inputs.iter().collect();
        inputs.sort_by(|a, b| a.name.cmp(&b.name));
        for input in inputs {
            put(&mut bytes, input.name.as_bytes());
            put(&mut bytes, input.tensor.datatype().as_str().as_bytes());
            let shape: Vec<u8> = input
                .tensor
                .shape()
                .iter()
                .flat_map(|d| (*d as u64).to_le_bytes())
                .collect();
            put(&mut bytes, &shape);
            put(&mut bytes, &(input.tensor.byte_len() as u64).to_le_bytes());
            for chunk in input.tensor.chunks() {
                bytes.extend_from_slice(chunk);
            }
        }
        let mut field = |b: &[u8]| put(&mut bytes, b);
        match &request.outputs {
            None => field(b"*"),
            Some(outputs) => {
                field(&(outputs.len() as u64).to_le_bytes());
                outputs.iter().for_each(|o| field(o.as_bytes()));
            }
        }
        for (output, k) in classification {
            field(output.as_bytes());
            field(&(*k as u64).to_le_bytes());
        }
        for (name, value) in &request.parameters {
            if NOT_IN_KEY.contains(&name.as_str()) {
                continue;
            }
            field(name.as_bytes());
            match value {
                Parameter::Bool(b) => field(&[0, *b as u8]),
                Parameter::Int64(v) => field(&[&[1u8][..], &v.to_le_bytes()].concat()),
                Parameter::Uint64(v) => field(&[&[2u8][..], &v.to_le_bytes()].concat()),
                Parameter::Double(v) => field(&[&[3u8][..], &v.to_le_bytes()].concat()),
                Parameter::String(s) => field(&[&[4u8][..], s.as_bytes()].concat()),
            }
        }
        let hash = Sha256::digest(&bytes).into();
        Key { bytes, hash }
    }
}

struct Entry {
    key: Vec<u8>,
    response: InferResponse,
    bytes: usize,
    tick: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<[u8; 32], Entry>,
    /// Least recently used first.
    order: BTreeMap<u64, [u8; 32]>,
    next_tick: u64,
    bytes: usize,
}

/// The cache's figures, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheFigures {
    pub capacity: u64,
    pub bytes: u64,
    pub entries: u64,
    pub evictions: u64,
    pub hits: u64,
    pub misses: u64,
}

pub struct ResponseCache {
    capacity: usize,
    lru: Mutex<Lru>,
    evictions: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ResponseCache {
    pub fn new(capacity: usize) -> ResponseCache {
        ResponseCache {
            capacity,
            lru: Mutex::default(),
            evictions: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stored answer for `key`, made the most recently used.
    pub fn get(&self, key: &Key) -> Option<InferResponse> {
        let mut lru = self.lock();
        let tick = lru.next_tick;
        let found = match lru.entries.get_mut(&key.hash) {
            Some(entry) if entry.key == key.bytes => {
                let old = std::mem::replace(&mut entry.tick, tick);
                Some((old, entry.response.clone()))
            }
            _ => None,
        };
        let Some((old, response)) = found else {
            drop(lru);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        lru.next_tick += 1;
        lru.order.remove(&old);
        lru.order.insert(tick, key.hash);
        drop(lru);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(response)
    }

    /// Stores `response` under `key`, evicting the least recently used entries to make room; an
    /// answer larger than the whole cache is not stored.
    pub fn put(&self, key: Key, response: &InferResponse) {
        let bytes = key.bytes.len()
            + response
                .outputs
                .iter()
                .map(|o| o.tensor.byte_len() + o.name.len())
                .sum::<usize>()
            + ENTRY_OVERHEAD;
        if bytes > self.capacity {
            return;
        }
        let mut lru = self.lock();
        if let Some(old) = lru.entries.remove(&key.hash) {
            lru.order.remove(&old.tick);
            lru.bytes -= old.bytes;
        }
        let mut evicted = 0;
        while lru.bytes + bytes > self.capacity {
            let Some((_, hash)) = lru.order.pop_first() else {
                break;
            };
            if let Some(entry) = lru.entries.remove(&hash) {
                lru.bytes -= entry.bytes;
                evicted += 1;
            }
        }
        let tick = lru.next_tick;
        lru.next_tick += 1;
        lru.order.insert(tick, key.hash);
        lru.bytes += bytes;
        // The stored copy owns its bytes: slices would pin whole request and batch buffers.
        let mut stored = response.clone();
        for output in &mut stored.outputs {
            output.tensor = output.tensor.owned();
        }
        lru.entries.insert(
            key.hash,
            Entry {
                key: key.bytes,
                response: stored,
                bytes,
                tick,
            },
        );
        drop(lru);
        if evicted > 0 {
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    pub fn figures(&self) -> CacheFigures {
        let lru = self.lock();
        CacheFigures {
            capacity: self.capacity as u64,
            bytes: lru.bytes as u64,
            entries: lru.entries.len() as u64,
            evictions: self.evictions.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferd_core::{NamedTensor, Tensor, TensorData};

    fn request(x: f32) -> InferRequest {
        InferRequest {
            inputs: vec![NamedTensor {
                name: "x".into(),
                tensor: Tensor::new(vec![1, 64], TensorData::F32(vec![x; 64])).unwrap(),
            }],
            ..Default::default()
        }
    }

    fn answer(x: f32) -> InferResponse {
        InferResponse {
            outputs: vec![NamedTensor {
                name: "y".into(),
                tensor: Tensor::new(vec![1, 64], TensorData::F32(vec![x; 64])).unwrap(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn hits_need_the_same_key_bytes_and_the_lru_stays_within_its_size() {
        let cache = ResponseCache::new(4 * 1024);
        let none = BTreeMap::new();
        let key = |x| Key::of("m", 1, &request(x), &none);
        assert!(cache.get(&key(1.0)).is_none());
        cache.put(key(1.0), &answer(1.0));
        assert_eq!(cache.get(&key(1.0)).unwrap().outputs, answer(1.0).outputs);
        // Another version, priority left out of the key, other parameters in it.
        assert!(cache.get(&Key::of("m", 2, &request(1.0), &none)).is_none());
        let mut r = request(1.0);
        r.parameters
            .insert("priority".into(), crate::Parameter::Uint64(2));
        assert!(cache.get(&Key::of("m", 1, &r, &none)).is_some());
        r.parameters
            .insert("temperature".into(), crate::Parameter::Double(0.5));
        assert!(cache.get(&Key::of("m", 1, &r, &none)).is_none());
        // A forged entry under the same hash but other key bytes is never returned.
        let forged = Key {
            bytes: b"other".to_vec(),
            hash: key(1.0).hash,
        };
        assert!(cache.get(&forged).is_none());
        for i in 0..20 {
            cache.put(key(i as f32 + 10.0), &answer(i as f32));
            let f = cache.figures();
            assert!(f.bytes <= f.capacity, "{f:?}");
        }
        let f = cache.figures();
        assert!(f.evictions > 0 && f.entries < 20, "{f:?}");
        // The most recent entry is there, the oldest evicted.
        assert!(cache.get(&key(29.0)).is_some());
        assert!(cache.get(&key(1.0)).is_none());
    }
}
