// Queue-scoped data roles for the function app's identity: every function both receives from and
// sends to both queues (PollOperation reschedules itself on export-operations and fans out to
// export-partitions; StartExports and Exports send the first poll), so Sender + Receiver on each
// queue, and nothing at namespace scope (no Data Owner, no management rights).

param namespaceName string
param queueNames array
param principalId string

// Built-in role definition ids.
var serviceBusDataSender = '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
var serviceBusDataReceiver = '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: namespaceName
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = [
  for queue in queueNames: {
    parent: namespace
    name: queue
  }
]

resource senders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in queueNames: {
    scope: queues[i]
    name: guid(queues[i].id, principalId, serviceBusDataSender)
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataSender)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource receivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in queueNames: {
    scope: queues[i]
    name: guid(queues[i].id, principalId, serviceBusDataReceiver)
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataReceiver)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]
