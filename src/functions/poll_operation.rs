//! `PollOperation` (Service Bus `export-operations`): one poll of one Graph operation.

use crate::app::App;
use crate::pipeline::PollJob;
use crate::runtime::{Invocation, InvocationReply, InvocationResult};

pub async fn run(app: &App, inv: Invocation) -> InvocationResult {
    let delivery = inv.service_bus("message")?;
    // An unparseable message fails every delivery and ends in the dead-letter queue, where an
    // operator can inspect it (custom handlers cannot dead-letter explicitly).
    let job = PollJob::try_from(&delivery.body)?;
    let handled = app.pipeline.handle_poll(&job).await?;
    Ok(InvocationReply::new().log(format!("run {} poll {}: {handled:?}", job.run_id, job.seq)))
}
