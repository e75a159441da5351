//! `CopyPartition` (Service Bus `export-partitions`): copies one partition into partner storage.

use crate::app::App;
use crate::pipeline::CopyJob;
use crate::runtime::{Invocation, InvocationReply, InvocationResult};

pub async fn run(app: &App, inv: Invocation) -> InvocationResult {
    let delivery = inv.service_bus("message")?;
    let job = CopyJob::try_from(&delivery.body)?;
    let handled = app
        .pipeline
        .handle_copy(&job, delivery.delivery_count)
        .await?;
    Ok(InvocationReply::new().log(format!("run {} part {}: {handled:?}", job.run_id, job.part)))
}
