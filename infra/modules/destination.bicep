// The partner's destination storage: a new hardened account, or an existing one (possibly in
// another resource group: main.bicep deploys this module at that group's scope). Either way the
// export container is ensured and the function app gets Storage Blob Data Contributor on that
// container only (exports and the run ledger live there; nothing else in the account is reachable).

param location string
param tags object
param name string
param createAccount bool
param containerName string
param principalId string

// Built-in role: Storage Blob Data Contributor (read/write/delete blobs; no ACL or account rights).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource newAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = if (createAccount) {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // Billing records are business records: geo-redundant.
    name: 'Standard_GRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Identity only: the app writes with its managed identity; readers get RBAC too.
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Open firewall, Entra-only access (no keys, no SAS): the Flex/Premium app without VNet
      // integration and the partner's FinOps tools reach the account over public endpoints.
      // Lock down with private endpoints + defaultAction Deny where the network allows.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: name
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = if (createAccount) {
  parent: account
  name: 'default'
  properties: {
    // Recover from accidental deletes or overwrites of exported files and the ledger.
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: 30
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 30
    }
  }
  dependsOn: [
    newAccount
  ]
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
    blobService
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

output accountId string = account.id
output containerId string = container.id
