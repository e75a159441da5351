// A new, hardened destination account for the partner's billing exports (used by
// destination.bicep when createDestinationStorage is true).

param location string
param tags object
param name string
@description('Days after which unbilled data under unbilledExpiryPrefixes is deleted; 0 = no such rule.')
param unbilledExpiryDays int = 0
param unbilledExpiryPrefixes array = []

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  #checkov:skip=CKV_AZURE_35: Flex/Premium apps without VNet integration reach storage over public endpoints; access is Entra-only (shared keys off), use private endpoints to lock down
  #checkov:skip=CKV_AZURE_59: same reason; the partner's FinOps tools read the exports from outside too
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

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
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
}

// Versioning keeps a deleted or overwritten blob as a previous version: without expiring those,
// retention (KEEP_SUPERSEDED_VERSIONS) would free no space. Previous versions go after the same
// 30 days the soft delete keeps them; the unbilled rule is the lifecycle alternative to retention.
var expirePreviousVersions = {
  enabled: true
  name: 'expire-previous-versions'
  type: 'Lifecycle'
  definition: {
    actions: {
      version: {
        delete: {
          daysAfterCreationGreaterThan: 30
        }
      }
    }
    filters: {
      blobTypes: [
        'blockBlob'
      ]
    }
  }
}
var expireUnbilled = {
  enabled: true
  name: 'expire-unbilled-data'
  type: 'Lifecycle'
  definition: {
    actions: {
      baseBlob: {
        delete: {
          daysAfterModificationGreaterThan: unbilledExpiryDays
        }
      }
    }
    filters: {
      blobTypes: [
        'blockBlob'
      ]
      prefixMatch: unbilledExpiryPrefixes
    }
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: unbilledExpiryDays > 0 ? [expirePreviousVersions, expireUnbilled] : [expirePreviousVersions]
    }
  }
}

output id string = account.id
