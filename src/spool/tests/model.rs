//! Any sequence of appends, partial acknowledgements and reopenings, against a model.

use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    /// Acknowledge this many more pending records (clamped to what is pending).
    Ack(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..40).prop_map(Op::Append),
        3 => (0usize..60).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of appends, partial acknowledgements and reopenings keeps every
    /// unacknowledged record exactly once, in order.
    #[test]
    fn unacknowledged_records_survive_exactly_once_in_order(ops in proptest::collection::vec(op(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut spool = Some(open(&s));
        let mut model: VecDeque<(u64, String)> = VecDeque::new();
        let mut counter = 0usize;
        for op in ops {
            let sp = spool.as_ref().unwrap();
            match op {
                Op::Append(n) => {
                    let batch: Vec<NewRecord> = (0..n).map(|i| rec(&format!("r{}", counter + i))).collect();
                    let range = sp.commit(&batch).unwrap();
                    for (seq, i) in range.zip(0..n) {
                        model.push_back((seq, format!("r{}", counter + i)));
                    }
                    counter += n;
                }
                Op::Ack(k) => {
                    let k = k.min(model.len());
                    if k > 0 {
                        let up_to = model[k - 1].0 + 1;
                        sp.ack(up_to).unwrap();
                        model.drain(..k);
                    }
                }
                Op::Reopen => {
                    sp.flush().unwrap();
                    drop(spool.take());
                    spool = Some(open(&s));
                }
            }
            let got = all_pending(spool.as_ref().unwrap());
            prop_assert_eq!(&got, &model.iter().cloned().collect::<Vec<_>>());
            prop_assert_eq!(spool.as_ref().unwrap().stats().pending_events, model.len() as u64);
        }
    }
}
