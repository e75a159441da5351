// Queue-scoped data role for the function app's identity: Azure Service Bus Data Owner on each of
// our two queues, and nothing at namespace scope.
//
// Why Owner and not Sender + Receiver: every function both receives from and sends to the queues
// (PollOperation reschedules itself on export-operations and fans out to export-partitions;
// StartBilledExports, StartUnbilledExports and Exports send the first poll), and on top of that the platform's target-based
// scaling for Service Bus triggers reads each queue's message count with the app's identity. Reading
// entity runtime properties needs the Manage claim, which among the built-in roles only Data Owner
// carries; with Receiver alone the scale controller cannot read the count and Flex cannot scale on
// queue length. Sources:
//   - Service Bus trigger, identity-based connections (the trigger needs Data Receiver and Data
//     Owner): https://learn.microsoft.com/azure/azure-functions/functions-bindings-service-bus-trigger#identity-based-connections
//   - Target-based scaling: https://learn.microsoft.com/azure/azure-functions/functions-target-based-scaling
//   - Microsoft's Flex Consumption Service Bus sample grants Data Owner + Data Receiver:
//     https://github.com/Azure-Samples/azure-functions-flex-consumption-samples/blob/main/E2E/SB-VNET/infra/main.bicep
//   - Role contents (Data Owner = Microsoft.ServiceBus/* data actions, a superset of Sender and
//     Receiver): https://learn.microsoft.com/azure/role-based-access-control/built-in-roles/integration#azure-service-bus-data-owner
// Least privilege is kept by scope: the role is assigned on the two queues only, so the identity
// cannot touch other entities of the namespace; Sender and Receiver would add nothing on top.

param namespaceName string
param queueNames array
param principalId string

// Built-in role definition id: Azure Service Bus Data Owner.
var serviceBusDataOwner = '090c5cfd-751d-490a-894a-3ce6f1109419'

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' existing = {
  name: namespaceName
}

resource queues 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' existing = [
  for queue in queueNames: {
    parent: namespace
    name: queue
  }
]

resource owners 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in queueNames: {
    scope: queues[i]
    name: guid(queues[i].id, principalId, serviceBusDataOwner)
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', serviceBusDataOwner)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]
