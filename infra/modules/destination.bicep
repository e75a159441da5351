// The partner's destination storage: a new hardened account, or an existing one (possibly in
// another resource group: main.bicep deploys this module at that group's scope). Either way the
// export container is ensured and the function app gets Storage Blob Data Contributor on that
// container only (exports and the run ledger live there; nothing else in the account is reachable).

param location string
param tags object
param name string
param createAccount bool
param containerName string
@description('FinOps hubs ingestion container in the same account (HUBS_INGESTION_CONTAINER); empty = none.')
param hubsContainerName string = ''
param principalId string
@description('Days after which unbilled data is deleted by a lifecycle rule (new accounts only); 0 = none.')
param unbilledExpiryDays int = 0
param unbilledExpiryPrefixes array = []

// Built-in role: Storage Blob Data Contributor (read/write/delete blobs; no ACL or account rights).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

// A new account is created by its own module so the resource itself is unconditional (and fully
// visible to static checks); an existing account is only referenced.
module newAccount 'destination-account.bicep' = if (createAccount) {
  name: 'destination-account'
  params: {
    location: location
    tags: tags
    name: name
    unbilledExpiryDays: unbilledExpiryDays
    unbilledExpiryPrefixes: unbilledExpiryPrefixes
  }
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: name
}

resource existingBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: existingBlobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
  dependsOn: [
    newAccount
  ]
}

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: container
  name: guid(container.id, principalId, storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The FinOps hubs landing writes there too (a hub reads it; hubs create it when the hub's own
// account is the destination, so it is ensured here as well, idempotently).
resource hubsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (!empty(hubsContainerName)) {
  parent: existingBlobService
  name: empty(hubsContainerName) ? 'unused' : hubsContainerName
  properties: {
    publicAccess: 'None'
  }
  dependsOn: [
    newAccount
  ]
}

resource hubsWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(hubsContainerName)) {
  scope: hubsContainer
  name: guid(account.id, hubsContainerName, principalId, storageBlobDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output accountId string = account.id
output containerId string = container.id
