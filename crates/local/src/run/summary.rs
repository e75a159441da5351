//! The closing summary of `local`, and the invoice check's verdicts from the events.

use std::collections::BTreeMap;

use serde_json::Value;

use super::LocalSummary;
use partner_billing_export::adapters::events::CloudEvent;
use partner_billing_export::contracts::events::{EventData, InvoiceCheck, Verdict};

/// The invoice check's last word per invoice, e.g. `Invoices: 3 checked, 3 reconciled (billed
/// usage matched the Azure lines of 3), 0 mismatched`; `None` when no check was made.
pub fn invoice_check_line(events: &[Value]) -> Option<String> {
    // The checks, by invoice: the event that compared usage too is the fuller verdict.
    let mut last: BTreeMap<String, InvoiceCheck> = BTreeMap::new();
    for e in events {
        let Some(EventData::InvoiceReconciled(d) | EventData::InvoiceMismatch(d)) = payload(e)
        else {
            continue;
        };
        let check = d.check;
        if check.azure_usage.is_some() || !last.contains_key(&check.invoice_id) {
            last.insert(check.invoice_id.clone(), check);
        }
    }
    if last.is_empty() {
        return None;
    }
    let reconciled = last
        .values()
        .filter(|c| c.verdict == Verdict::Reconciled)
        .count();
    let usage_matched = last
        .values()
        .filter(|c| {
            c.azure_usage
                .as_ref()
                .is_some_and(|u| u.verdict == Verdict::Reconciled)
        })
        .count();
    let mismatched: Vec<&str> = last
        .iter()
        .filter(|(_, c)| c.verdict != Verdict::Reconciled)
        .map(|(id, _)| id.as_str())
        .collect();
    Some(format!(
        "Invoices: {} checked, {reconciled} reconciled (billed usage matched the Azure lines of {usage_matched}), {} mismatched{}",
        last.len(),
        mismatched.len(),
        if mismatched.is_empty() {
            String::new()
        } else {
            format!(": {}", mismatched.join(", "))
        }
    ))
}

/// An event the Event Grid stand-in accepted, read as one of ours (`None` for anything else).
pub fn payload(e: &Value) -> Option<EventData> {
    let ev: CloudEvent = serde_json::from_value(e.clone()).ok()?;
    ev.payload().ok()
}

pub fn print_summary(s: &LocalSummary) {
    println!();
    println!("Runs:");
    for r in &s.runs {
        match &r.reason {
            None => println!(
                "  {:<10} {:<45} {:>3} files {:>10} bytes {:>8} rows  ({})",
                r.status,
                r.subject,
                r.files,
                r.bytes,
                r.rows.map_or_else(|| "n/a".to_string(), |n| n.to_string()),
                r.run_id
            ),
            Some(why) => println!("  {:<10} {:<45} {why}  ({})", r.status, r.subject, r.run_id),
        }
    }
    println!();
    println!(
        "Summary: {} runs ({} completed, {} no data, {} failed), {} partitions, {} bytes, {} rows, {:.1} s",
        s.runs.len(),
        s.runs.len() - s.failed() - s.no_data(),
        s.no_data(),
        s.failed(),
        s.partitions,
        s.bytes,
        s.rows,
        s.duration.as_secs_f64()
    );
    println!(
        "Verified: {} of {} partitions byte-identical to what the Graph sandbox served{}",
        s.verified,
        s.partitions,
        if s.mismatches.is_empty() {
            String::new()
        } else {
            format!("; {} MISMATCHED", s.mismatches.len())
        }
    );
    if s.parquet_files + s.focus_files > 0 {
        println!(
            "Parquet: {} typed and {} FOCUS files beside the partitions",
            s.parquet_files, s.focus_files
        );
    }
    if let Some(line) = invoice_check_line(&s.events) {
        println!("{line}");
    }
    for m in &s.mismatches {
        println!("  mismatch: {m}");
    }
    if s.dead_letters > 0 {
        println!(
            "Dead-lettered messages: {} (see {}/dead-letters.jsonl)",
            s.dead_letters,
            s.output_dir.display()
        );
    }
    println!("Output:  {}", s.data_location);
    println!("Logs:    {}", s.output_dir.join("handler.log").display());
    println!(
        "Events:  {} ({} events)",
        s.events_file.display(),
        s.events.len()
    );
}
