// Event Grid custom topic for PartnerBillingExport.* notifications (CloudEvents 1.0) and an
// optional example webhook subscription. The publish permission is in eventgrid-access.bicep
// (the app settings need this topic's endpoint before the app's identity exists).

param location string
param tags object
param name string
@description('HTTPS webhook that receives the events; empty = no subscription (the default).')
param webhookUrl string

resource topic 'Microsoft.EventGrid/topics@2023-12-15-preview' = {
  #checkov:skip=CKV_AZURE_193: the app (no VNet) publishes over the public endpoint; publishing needs Entra ID + EventGrid Data Sender (local auth disabled)
  name: name
  location: location
  tags: tags
  // No roles are granted to it; it lets subscriptions deliver or dead-letter with an identity.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // The handler publishes CloudEvents 1.0 batches (application/cloudevents-batch+json).
    inputSchema: 'CloudEventSchemaV1_0'
    // Entra ID only: no topic access keys / SAS tokens.
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    // Consumers are outside our network; publishing needs the Data Sender role regardless.
    publicNetworkAccess: 'Enabled'
  }
}

// Example subscription. Event Grid validates a webhook when the subscription is created (the
// endpoint must answer the CloudEvents OPTIONS abuse-protection handshake), so it stays off unless
// a URL is given. Downstream systems usually add their own subscriptions instead.
resource webhook 'Microsoft.EventGrid/topics/eventSubscriptions@2023-12-15-preview' = if (!empty(webhookUrl)) {
  parent: topic
  name: 'example-webhook'
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: webhookUrl
        maxEventsPerBatch: 1
      }
    }
    filter: {
      includedEventTypes: [
        'PartnerBillingExport.ExportStarted.v1'
        'PartnerBillingExport.ExportCompleted.v1'
        'PartnerBillingExport.ExportFailed.v1'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output id string = topic.id
output name string = topic.name
// https://<topic>.<region>-1.eventgrid.azure.net/api/events
output endpoint string = topic.properties.endpoint
