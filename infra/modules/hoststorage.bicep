// The Functions host's own storage account (AzureWebJobsStorage + the deployment container).
//
// Kept apart from the partner's destination account on purpose: the host identity needs Storage
// Blob Data *Owner* here (leases, keys, timer schedule monitor, package container), which must not
// extend to the billing data; the two also differ in lifecycle (the host account is disposable
// with the app, the destination may be an existing partner account in another resource group).
//
// Shared keys are disabled: Flex Consumption runs fully identity-based (AzureWebJobsStorage__*
// settings and identity auth on the deployment container), and the Premium option in this template
// skips the Azure Files content share (which would need a key) by running from a package blob that
// the app reads with its managed identity (see functionapp.bicep).

param location string
param tags object
param name string
@description('Standard_ZRS (zone-redundant) where the region has availability zones; Standard_LRS elsewhere (ZRS is refused there).')
@allowed([
  'Standard_ZRS'
  'Standard_LRS'
])
param sku string = 'Standard_ZRS'
param deploymentContainerName string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  #checkov:skip=CKV_AZURE_35: Flex/Premium apps without VNet integration reach storage over public endpoints; access is Entra-only (shared keys off), use private endpoints to lock down
  #checkov:skip=CKV_AZURE_59: same reason: the host must reach its storage without VNet integration; Entra-only access
  #checkov:skip=CKV_AZURE_206: host state (leases, timer status, keys, package) is rebuilt or redeployed; ZRS (LRS where a region has no zones), not geo-replication
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // Host state is rebuilt by the runtime (leases, timer status); zone redundancy is enough, and
    // locally redundant storage where the region has no availability zones.
    name: sku
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Flex/Premium without VNet integration reach the account over public endpoints; access is
      // Entra-only (no keys, no SAS), so the firewall stays open. With VNet integration set
      // defaultAction to Deny and add private endpoints.
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

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
