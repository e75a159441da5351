//! `PollOperation` (Service Bus `export-operations`): one poll of one Graph operation.

use crate::app::App;
use crate::pipeline::PollJob;
use functions_runtime::{InvocationReply, InvocationResult, ServiceBusDelivery};

pub async fn run(app: &App, delivery: ServiceBusDelivery) -> InvocationResult {
    // An unparseable message fails every delivery and ends in the dead-letter queue, where an
    // operator can inspect it (custom handlers cannot dead-letter explicitly).
    let job = PollJob::try_from(&delivery.body)?;
    let handled = app.pipeline.handle_poll(&job).await?;
    Ok(InvocationReply::new().log(format!("run {} poll {}: {handled:?}", job.run_id, job.seq)))
}
