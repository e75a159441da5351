//! `CopyPartition` (Service Bus `export-partitions`): copies one partition into partner storage.

use crate::app::App;
use crate::pipeline::CopyJob;
use functions_runtime::{InvocationReply, InvocationResult, ServiceBusDelivery};

pub async fn run(app: &App, delivery: ServiceBusDelivery) -> InvocationResult {
    let job = CopyJob::try_from(&delivery.body)?;
    let handled = app
        .pipeline
        .handle_copy(&job, delivery.delivery_count)
        .await?;
    Ok(InvocationReply::new().log(format!("run {} part {}: {handled:?}", job.run_id, job.part)))
}
