//! `simulate --seeds N` (or `--seed S` to replay one): runs the deterministic simulation and
//! ends with the line `N seeds, M violations`; exits non-zero when there is any violation.
//! `--break-<invariant>` breaks one invariant on purpose (see `Break`), to watch it caught.

use std::process::ExitCode;

use partner_billing_sim::{simulate, Break, SimOptions};

fn usage() -> ExitCode {
    let breaks: Vec<String> = Break::ALL
        .iter()
        .map(|b| format!("--break-{}", b.name()))
        .collect();
    eprintln!(
        "usage: simulate [--seeds N] [--seed S] [--first F] [{}]",
        breaks.join(" | ")
    );
    ExitCode::from(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut seeds: u64 = 100;
    let mut first: u64 = 1;
    let mut only: Option<u64> = None;
    let mut breaks = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse::<u64>().ok());
        match a.as_str() {
            "--seeds" => match num() {
                Some(n) => seeds = n,
                None => return usage(),
            },
            "--first" => match num() {
                Some(n) => first = n,
                None => return usage(),
            },
            "--seed" => match num() {
                Some(n) => only = Some(n),
                None => return usage(),
            },
            flag => match Break::from_flag(flag) {
                Some(b) => breaks.push(b),
                None => return usage(),
            },
        }
    }
    let list: Vec<u64> = match only {
        Some(s) => vec![s],
        None => (first..first + seeds).collect(),
    };
    let mut violations = 0usize;
    let (mut runs, mut completed, mut failed, mut dead) = (0, 0, 0, 0);
    let started = std::time::Instant::now();
    for (i, seed) in list.iter().enumerate() {
        let opts = SimOptions {
            breaks: breaks.clone(),
            ..SimOptions::seed(*seed)
        };
        let outcome = simulate(&opts).await;
        if let Ok(out) = &outcome {
            runs += out.runs;
            completed += out.completed;
            failed += out.failed;
            dead += out.dead_letters;
        }
        match outcome {
            Ok(out) if out.violations.is_empty() => {}
            Ok(out) => {
                violations += out.violations.len();
                for v in &out.violations {
                    println!("seed {seed}: {v}");
                }
                println!("replay: scripts/simulate.sh --seed {seed}");
            }
            Err(e) => {
                violations += 1;
                println!("seed {seed}: the simulation itself failed: {e:#}");
            }
        }
        if (i + 1) % 100 == 0 {
            eprintln!(
                "{} seeds in {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "runs: {runs} ({completed} completed, {failed} failed), {dead} dead-lettered messages"
    );
    println!("{} seeds, {violations} violations", list.len());
    if violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
