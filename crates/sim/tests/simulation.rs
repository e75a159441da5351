//! The simulation as a test: many seeds hold every invariant, and an invariant broken on
//! purpose is caught (the check is not vacuous).

use partner_billing_sim::{simulate, Break, SimOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_hold_every_invariant() {
    // scripts/test.sh runs 1,000 seeds through scripts/simulate.sh; this keeps `cargo test` quick.
    for seed in 1..=40 {
        let out = simulate(&SimOptions::seed(seed)).await.unwrap();
        assert!(
            out.violations.is_empty(),
            "seed {seed}: {:#?} (replay: scripts/simulate.sh --seed {seed})",
            out.violations
        );
        assert!(out.runs >= 4, "seed {seed}: {} runs", out.runs);
    }
}

/// Each invariant, broken on purpose, is reported: none of the checks is vacuous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broken_invariant_is_caught() {
    for b in Break::ALL {
        for seed in 1..=2 {
            let opts = SimOptions {
                breaks: vec![b],
                ..SimOptions::seed(seed)
            };
            let out = simulate(&opts).await.unwrap();
            assert!(
                out.violations.iter().any(|v| v.contains(b.symptom())),
                "--break-{} on seed {seed} was not caught: {:#?}",
                b.name(),
                out.violations
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_replays_the_same_way() {
    // Without the concurrent steps, whose interleaving follows the scheduler, not the seed.
    let opts = SimOptions {
        concurrent: false,
        ..SimOptions::seed(7)
    };
    let a = simulate(&opts).await.unwrap();
    let b = simulate(&opts).await.unwrap();
    assert_eq!((a.runs, a.steps), (b.runs, b.steps));
}

/// Marking a part done does not rewrite the run record, so a run of 200 partitions writes its
/// record about as often as a run of 2 (not once per part).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_record_is_not_rewritten_per_part() {
    let calm = |partitions| SimOptions {
        faults: partner_billing_sim::world::Faults::NONE,
        storm_steps: 0,
        partitions: Some(partitions),
        ..SimOptions::seed(11)
    };
    let small = simulate(&calm(2)).await.unwrap();
    let large = simulate(&calm(200)).await.unwrap();
    assert!(small.violations.is_empty() && large.violations.is_empty());
    assert_eq!(large.completed, large.runs);
    assert!(
        large.max_run_record_writes <= small.max_run_record_writes + 2,
        "200 parts: {} writes of one run record, 2 parts: {}",
        large.max_run_record_writes,
        small.max_run_record_writes
    );
    assert!(large.max_run_record_writes < 50);
}
