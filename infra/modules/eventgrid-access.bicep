// EventGrid Data Sender on the topic only: publish events, nothing else (cannot read or manage
// subscriptions, cannot touch other topics).

param topicName string
param principalId string

// Built-in role definition id: EventGrid Data Sender.
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2023-12-15-preview' existing = {
  name: topicName
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: topic
  name: guid(topic.id, principalId, eventGridDataSender)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
