//! The job over a scorer that answers in this process without a model: the order, the
//! checkpoint and resume, the errors, shards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use inferd_core::{DataType, NamedTensor, Tensor, TensorData, TensorSpec};
use inferd_runtime::InferRequest;

use crate::*;

/// y = 2x per row of a [n, 2] FP32 input; a request holding the value 13 fails (a model error).
struct Doubler {
    model: ModelInfo,
    requests: AtomicU64,
}

impl Doubler {
    fn new() -> Arc<Doubler> {
        Arc::new(Doubler {
            model: ModelInfo {
                name: "double".into(),
                max_batch_size: 8,
                inputs: vec![TensorSpec::new("x", DataType::F32, vec![2])],
                outputs: vec![],
            },
            requests: AtomicU64::new(0),
        })
    }
}

impl Scorer for Doubler {
    fn model(&self) -> &ModelInfo {
        &self.model
    }
    fn score(&self, _id: String, request: InferRequest) -> ScoreFuture {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let x = &request.inputs[0].tensor;
            let TensorData::F32(v) = x.data() else {
                return Err("not FP32".into());
            };
            if v.contains(&13.0) {
                return Err("13 is unlucky".into());
            }
            // Answer late for early rows: completion order is not input order.
            tokio::time::sleep(std::time::Duration::from_millis(
                (20.0 - v[0].min(20.0)) as u64,
            ))
            .await;
            let y = Tensor::new(
                x.shape().to_vec(),
                TensorData::F32(v.iter().map(|a| a * 2.0).collect()),
            )?;
            Ok(Scored {
                version: "1".into(),
                outputs: vec![NamedTensor {
                    name: "y".into(),
                    tensor: y,
                }],
            })
        })
    }
}

struct Quiet;
impl Progress for Quiet {
    fn update(&self, _: u64, _: u64, _: u64, _: u64) {}
}

fn job(dir: &std::path::Path, input: &str, output: &str) -> Job {
    Job {
        inputs: vec![Location::Local(dir.join(input))],
        input_format: None,
        output: Location::Local(dir.join(output)),
        output_format: None,
        errors: None,
        columns: None,
        id_column: None,
        batch_size: Some(3),
        concurrency: 4,
        resume: false,
        max_errors: None,
        shard: Shard::ALL,
        model: "double".into(),
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("inferd-batch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn rows_come_out_in_order_and_bad_rows_go_to_errors() {
    let d = temp_dir("order");
    let mut csv = String::from("a,b\n");
    for i in 0..20 {
        match i {
            5 => csv += "5\n",
            7 => csv += "x,1\n",
            _ => csv += &format!("{i},{}\n", i + 100),
        }
    }
    std::fs::write(d.join("in.csv"), csv).unwrap();
    let scorer = Doubler::new();
    let summary = run(job(&d, "in.csv", "out.csv"), scorer, &Quiet)
        .await
        .unwrap();
    assert_eq!((summary.rows, summary.errors), (20, 3));
    let out = std::fs::read_to_string(d.join("out.csv")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "row,y_0,y_1,model_version");
    assert_eq!(lines[1], "0,0,200,1");
    let rows: Vec<u64> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let want: Vec<u64> = (0..20).filter(|i| ![5, 7, 13].contains(i)).collect();
    assert_eq!(rows, want);
    let errors = std::fs::read_to_string(d.join("out.csv.errors.jsonl")).unwrap();
    let errors: Vec<serde_json::Value> = errors
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed: Vec<u64> = errors.iter().map(|e| e["row"].as_u64().unwrap()).collect();
    assert_eq!(failed, vec![5, 7, 13]);
    assert!(
        errors[1]["error"]
            .as_str()
            .unwrap()
            .contains("'x' is not a number")
    );
    assert!(errors[2]["error"].as_str().unwrap().contains("unlucky"));
    // A finished output is not overwritten.
    let again = run(job(&d, "in.csv", "out.csv"), Doubler::new(), &Quiet).await;
    assert!(matches!(again, Err(BatchError::Usage(_))));
}

#[tokio::test]
async fn shards_partition_the_rows() {
    let d = temp_dir("shards");
    let mut csv = String::from("a,b\n");
    for i in 0..5000 {
        csv += &format!("{},{i}\n", i % 7);
    }
    std::fs::write(d.join("in.csv"), csv).unwrap();
    let mut seen = Vec::new();
    for i in 0..3 {
        let mut j = job(&d, "in.csv", &format!("out{i}.jsonl"));
        j.shard = Shard::parse(&format!("{i}/3")).unwrap();
        j.batch_size = Some(8);
        run(j, Doubler::new(), &Quiet).await.unwrap();
        let text = std::fs::read_to_string(d.join(format!("out{i}.jsonl"))).unwrap();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            seen.push(v["row"].as_u64().unwrap());
        }
    }
    seen.sort();
    let want: Vec<u64> = (0..5000).filter(|i| *i != 13).collect();
    assert_eq!(seen, want);
    assert!(Shard::parse("3/3").is_err() && Shard::parse("a/b").is_err());
}
