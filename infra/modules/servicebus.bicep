// Service Bus namespace and the two work queues (names must match functions/*/function.json and
// src/functions/mod.rs CATALOG: export-operations, export-partitions).

param location string
param tags object
param name string
param queueNames array

// Standard, not Basic: scheduled messages (our poll back-off) and duplicate detection need it.
resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    // Entra ID only: the function app uses its managed identity; no SAS keys exist to leak.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [
  for queue in queueNames: {
    parent: namespace
    name: queue
    properties: {
      // A message that keeps failing (poison: bad payload, a bug, permissions missing) goes to
      // the dead-letter queue after 10 tries instead of looping forever; the DeadletteredMessages
      // alert then fires. Transient Graph/storage errors are retried well within 10 deliveries.
      maxDeliveryCount: 10
      // 5 minutes is the maximum lock. Copies of large partitions can outlast it, so host.json sets
      // extensions.serviceBus.maxAutoLockRenewalDuration (10 min) and the host renews the lock.
      lockDuration: 'PT5M'
      // An expired message is a lost poll or copy: keep it in the dead-letter queue to inspect.
      deadLetteringOnMessageExpiration: true
      // Our MessageIds are deterministic (one per poll step / per partition), so a retried send
      // after a timeout, or two racing invocations, enqueue the work once. The window covers the
      // longest gap between such duplicate sends (a retried invocation within the same hour).
      requiresDuplicateDetection: true
      duplicateDetectionHistoryTimeWindow: 'PT1H'
      // Polls are rescheduled at most MAX_RETRY_AFTER_SECONDS (1 h) ahead and the whole run has
      // POLL_DEADLINE_MINUTES (24 h); 7 days leaves room for an outage of the function app
      // without losing work, while stale messages do not live forever.
      defaultMessageTimeToLive: 'P7D'
      requiresSession: false
      enablePartitioning: false
      enableBatchedOperations: true
      maxSizeInMegabytes: 1024
    }
  }
]

output id string = namespace.id
output name string = namespace.name
// e.g. contoso-billing.servicebus.windows.net (serviceBusEndpoint is https://<fqdn>:443/).
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '//')[1], ':')[0]
