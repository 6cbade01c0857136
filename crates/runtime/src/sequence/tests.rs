use std::sync::Arc;
use std::time::Duration;

use inferd_core::{
    ControlInput, ControlKind, DataType, ModelSignature, SequenceBatching, SequenceState, Tensor,
    TensorData, TensorSpec,
};

use super::*;

fn accumulator(idle_us: u64) -> SequenceBatching {
    SequenceBatching {
        max_sequence_idle_us: idle_us,
        control_inputs: vec![
            ControlInput {
                name: "START".into(),
                kind: ControlKind::Start,
                datatype: DataType::I32,
                false_true: Some([0.0, 1.0]),
            },
            ControlInput {
                name: "CORRID".into(),
                kind: ControlKind::Corrid,
                datatype: DataType::U64,
                false_true: None,
            },
        ],
        states: vec![SequenceState {
            input: "STATE_IN".into(),
            output: "STATE_OUT".into(),
            datatype: DataType::I32,
            dims: vec![1],
        }],
        ..SequenceBatching::default()
    }
}

fn signature() -> ModelSignature {
    let t = |name: &str, dt| TensorSpec::new(name, dt, vec![-1, 1]);
    ModelSignature {
        inputs: vec![
            t("INPUT", DataType::I32),
            t("START", DataType::I32),
            t("STATE_IN", DataType::I32),
            t("CORRID", DataType::U64),
        ],
        outputs: vec![t("OUTPUT", DataType::I32), t("STATE_OUT", DataType::I32)],
    }
}

fn sequences(idle_us: u64, slots: usize) -> Sequences {
    let (layout, visible) = SequenceLayout::derive(&accumulator(idle_us), &signature(), true)
        .expect("the accumulator's layout");
    assert_eq!(
        visible.inputs.iter().map(|t| &t.name).collect::<Vec<_>>(),
        ["INPUT"]
    );
    assert_eq!(
        visible.outputs.iter().map(|t| &t.name).collect::<Vec<_>>(),
        ["OUTPUT"]
    );
    Sequences::new(Arc::new(layout), "acc", 1, slots)
}

fn value(v: i32) -> Tensor {
    Tensor::new(vec![1, 1], TensorData::I32(vec![v])).unwrap()
}

fn int(t: &Tensor) -> i64 {
    match t.data() {
        TensorData::I32(v) => i64::from(v[0]),
        TensorData::U64(v) => v[0] as i64,
        other => panic!("unexpected {other:?}"),
    }
}

/// The accumulator as a backend would run it: OUTPUT = STATE_OUT = STATE_IN + INPUT; it also
/// reports what the control inputs said.
async fn backend(inputs: Vec<Tensor>) -> Result<(Vec<Tensor>, (i64, i64)), RuntimeError> {
    let sum = int(&inputs[0]) + int(&inputs[2]);
    let seen = (int(&inputs[1]), int(&inputs[3]));
    Ok((vec![value(sum as i32), value(sum as i32)], seen))
}

fn flags(id: SequenceId, start: bool, end: bool) -> Flags {
    Flags { id, start, end }
}

#[tokio::test]
async fn state_is_carried_per_sequence_and_controls_are_filled() {
    let s = sequences(1_000_000, 4);
    let (a, b) = (SequenceId::Number(7), SequenceId::Text("b".into()));
    let (out, seen) = s
        .run(
            &flags(a.clone(), true, false),
            vec![value(1)],
            None,
            backend,
        )
        .await
        .unwrap();
    assert_eq!((int(&out[0]), seen), (1, (1, 7)));
    // A string id is refused by an integer CORRID input, and nothing is left live by it.
    let err = s
        .run(
            &flags(b.clone(), true, false),
            vec![value(1)],
            None,
            backend,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("use an integer sequence_id"),
        "{err}"
    );
    let (out, seen) = s
        .run(
            &flags(a.clone(), false, false),
            vec![value(2)],
            None,
            backend,
        )
        .await
        .unwrap();
    assert_eq!((int(&out[0]), seen), (3, (0, 7)));
    let (out, _) = s
        .run(
            &flags(a.clone(), false, true),
            vec![value(3)],
            None,
            backend,
        )
        .await
        .unwrap();
    assert_eq!(int(&out[0]), 6);
    // Ended: the next request must start it again.
    let err = s
        .run(
            &flags(a.clone(), false, false),
            vec![value(1)],
            None,
            backend,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("must specify the START flag"),
        "{err}"
    );
    let (out, _) = s
        .run(&flags(a, true, false), vec![value(5)], None, backend)
        .await
        .unwrap();
    assert_eq!(int(&out[0]), 5, "a new start begins from zeros");
}

#[tokio::test]
async fn idle_sequences_are_released_and_counted() {
    let s = sequences(20_000, 4);
    let id = SequenceId::Number(1);
    s.run(
        &flags(id.clone(), true, false),
        vec![value(1)],
        None,
        backend,
    )
    .await
    .unwrap();
    assert_eq!(s.counts().active, 1);
    tokio::time::sleep(Duration::from_millis(40)).await;
    let err = s
        .run(&flags(id, false, false), vec![value(1)], None, backend)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("released after 20000 us idle"),
        "{err}"
    );
    assert_eq!(
        s.counts(),
        SequenceCounts {
            active: 0,
            released_idle: 1
        }
    );
}

#[tokio::test]
async fn a_new_sequence_waits_for_a_free_slot() {
    let s = Arc::new(sequences(1_000_000, 1));
    s.run(
        &flags(SequenceId::Number(1), true, false),
        vec![value(1)],
        None,
        backend,
    )
    .await
    .unwrap();
    // No slot, and a deadline: it gives up.
    let soon = Some(Instant::now() + Duration::from_millis(30));
    let err = s
        .run(
            &flags(SequenceId::Number(2), true, false),
            vec![value(1)],
            soon,
            backend,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::TimedOut { .. }), "{err}");
    // The first ends, and the second gets its slot.
    let waiting = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            s.run(
                &flags(SequenceId::Number(2), true, false),
                vec![value(4)],
                None,
                backend,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiting.is_finished());
    s.run(
        &flags(SequenceId::Number(1), false, true),
        vec![value(1)],
        None,
        backend,
    )
    .await
    .unwrap();
    let (out, _) = waiting.await.unwrap().unwrap();
    assert_eq!(int(&out[0]), 4);
}

#[test]
fn flags_take_integer_or_string_ids_and_refuse_none() {
    use crate::Parameter;
    let mut p = Parameters::new();
    assert!(
        Flags::parse(&p, "acc")
            .unwrap_err()
            .to_string()
            .contains("must specify a non-zero or non-empty correlation ID")
    );
    p.insert("sequence_id".into(), Parameter::Int64(5));
    p.insert("sequence_start".into(), Parameter::Bool(true));
    assert_eq!(
        Flags::parse(&p, "acc").unwrap(),
        flags(SequenceId::Number(5), true, false)
    );
    p.insert("sequence_id".into(), Parameter::String("x".into()));
    p.insert("sequence_end".into(), Parameter::Bool(true));
    assert_eq!(
        Flags::parse(&p, "acc").unwrap(),
        flags(SequenceId::Text("x".into()), true, true)
    );
    p.insert("sequence_id".into(), Parameter::Int64(-1));
    assert!(Flags::parse(&p, "acc").is_err());
}

#[test]
fn the_layout_checks_the_model() {
    let mut config = accumulator(0);
    config.states[0].datatype = DataType::F32;
    let err = SequenceLayout::derive(&config, &signature(), true).unwrap_err();
    assert!(err.contains("is FP32 but the model has INT32"), "{err}");
    let mut config = accumulator(0);
    config.control_inputs[0].name = "GO".into();
    let err = SequenceLayout::derive(&config, &signature(), true).unwrap_err();
    assert!(
        err.contains("control input 'GO' is not in the model"),
        "{err}"
    );
    assert_eq!(
        Sequences::capacity(&accumulator(0), 8, 2),
        16,
        "direct: a slot per batch row per instance"
    );
}
