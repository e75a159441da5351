// The function app (custom handler on Linux) with its plan, its managed identity (system-assigned by
// default, or a user-assigned one passed in), its app settings, and the roles it needs on its own
// host storage and on Application Insights.
//
// hostingPlan:
//   flex    (default) Flex Consumption FC1: functionAppConfig.runtime {custom, 1.0}; the package is
//           "one deploy"-ed into a blob container that the app reads with its identity. Per-function
//           scale-out, scale to zero, 30 s app-initialization limit (our binary starts in well
//           under a second). Flex rejects or ignores many App Service site properties and app
//           settings ("Flex Consumption plan deprecations",
//           https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations):
//           ARM fails the deployment with error 51021 "... site configuration properties
//           (Site.SiteConfig.FtpsState, Site.SiteConfig.LinuxFxVersion) for Flex Consumption sites is
//           invalid" even for empty values. So a Flex site gets a siteConfig with app settings only
//           (as in Microsoft's Flex template,
//           https://github.com/Azure-Samples/azure-functions-flex-consumption-samples/blob/main/IaC/bicep/core/host/function.bicep),
//           and none of FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION /
//           WEBSITE_RUN_FROM_PACKAGE / WEBSITE_CONTENT*. tests/infra/test_flex_site.py enforces this.
//   premium Elastic Premium EP1 (Linux): always-warm instances, longer-lived workers. The app runs
//           from a package blob (WEBSITE_RUN_FROM_PACKAGE = blob URL, read with the managed
//           identity) instead of an Azure Files content share, because Azure Files would need a
//           storage key; see docs/deploy.md for the upload step.

param location string
param tags object
param appName string
param planName string
@allowed([
  'flex'
  'premium'
])
param hostingPlan string
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int
@minValue(1)
@maxValue(100)
param premiumMaximumElasticWorkerCount int

param hostStorageName string
param deploymentContainerUrl string
param packageBlobName string
param appInsightsName string
param appInsightsConnectionString string

@description('Settings the handler reads (src/settings.rs), already resolved by main.bicep.')
param handlerSettings object

@description('Resource id of a user-assigned identity to run the app as; empty = system-assigned identity.')
param userAssignedIdentityId string = ''
@description('Client id of that user-assigned identity (empty with the system-assigned identity).')
param userAssignedIdentityClientId string = ''
@description('Principal (object) id of that user-assigned identity (empty with the system-assigned identity).')
param userAssignedIdentityPrincipalId string = ''

var isFlex = hostingPlan == 'flex'
var useUserAssigned = !empty(userAssignedIdentityId)

// Built-in role definition ids.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// app-settings:begin (tests/deploy_layout.rs scans the names between these markers)
// Sources for the host settings below:
//   identity-based connections (`__credential`, `__clientId`):
//     https://learn.microsoft.com/azure/azure-functions/functions-reference#common-properties-for-identity-based-connections
//   Entra-authenticated Application Insights ingestion:
//     https://learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication
var hostSettings = {
  // Identity-based host storage: no AzureWebJobsStorage connection string, no key.
  AzureWebJobsStorage__accountName: hostStorageName
  AzureWebJobsStorage__credential: 'managedidentity'
  // The trigger connection (ServiceBusConnection__fullyQualifiedNamespace comes with the handler
  // settings from main.bicep). `credential = managedidentity` pins the host to the app's managed
  // identity; without it the host builds a DefaultAzureCredential, which prefers environment
  // credentials (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET) over the managed identity.
  ServiceBusConnection__credential: 'managedidentity'
  // The connection string only addresses the resource; ingestion is authenticated with Entra ID
  // because local auth is disabled on the component.
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: useUserAssigned ? 'ClientId=${userAssignedIdentityClientId};Authorization=AAD' : 'Authorization=AAD'
}
// A user-assigned identity must be named in every identity-based connection (`__clientId`).
var userAssignedHostSettings = useUserAssigned ? {
  AzureWebJobsStorage__clientId: userAssignedIdentityClientId
  ServiceBusConnection__clientId: userAssignedIdentityClientId
} : {}
// Premium only; none of these may reach a Flex site (see the header). The app runs from a package
// blob read with the managed identity:
// https://learn.microsoft.com/azure/azure-functions/run-functions-from-deployment-package#fetch-a-package-from-azure-blob-storage-using-a-managed-identity
var premiumSettings = isFlex ? {} : {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  WEBSITE_RUN_FROM_PACKAGE: '${deploymentContainerUrl}/${packageBlobName}'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: useUserAssigned ? userAssignedIdentityId : 'SystemAssigned'
}
// app-settings:end
var appSettings = union(hostSettings, userAssignedHostSettings, premiumSettings, handlerSettings)
var appSettingsList = [
  for setting in items(appSettings): {
    name: setting.key
    value: setting.value
  }
]

// Flex: app settings only (see the header; Flex's defaults already are TLS 1.2 and no FTP, and
// basic publishing credentials are switched off below for both plans).
var flexSiteConfig = {
  appSettings: appSettingsList
}
// Premium: a custom handler on Linux has no language stack image tag; the host image is chosen by
// FUNCTIONS_WORKER_RUNTIME=custom.
var premiumSiteConfig = {
  linuxFxVersion: ''
  minTlsVersion: '1.2'
  scmMinTlsVersion: '1.2'
  ftpsState: 'Disabled'
  http20Enabled: true
  remoteDebuggingEnabled: false
  appSettings: appSettingsList
}

var principalId = useUserAssigned ? userAssignedIdentityPrincipalId : site.identity.principalId
// Role assignment names. An assignment's principal cannot be changed (ARM refuses with
// RoleAssignmentUpdateNotPermitted), so a user-assigned identity is part of the name: moving an
// app from its system-assigned identity to a user-assigned one (the federated Graph credential)
// creates new assignments instead of rewriting the old ones. System-assigned names are unchanged.
var assignmentKey = useUserAssigned ? '${site.id}|${userAssignedIdentityId}' : site.id

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  #checkov:skip=CKV_AZURE_225: a monthly batch pipeline tolerates a zone outage (Service Bus redelivers); zone redundancy would pin always-on instances
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: 'EP1'
    tier: 'ElasticPremium'
  }
  properties: {
    // Linux.
    reserved: true
    maximumElasticWorkerCount: isFlex ? null : premiumMaximumElasticWorkerCount
    zoneRedundant: false
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  #checkov:skip=CKV_AZURE_222: the Exports HTTP function is called by operators and schedulers over the internet, protected by function keys
  #checkov:skip=CKV_AZURE_17: callers authenticate with function keys; mutual TLS would add certificate management for no gain here
  #checkov:skip=CKV_AZURE_212: queue- and timer-driven batch work; Flex scales from zero and Service Bus redelivers on instance loss
  #checkov:skip=CKV_AZURE_213: App Service health check does not apply to Flex Consumption; the Functions host monitors the handler itself
  #checkov:skip=CKV_AZURE_78: Flex rejects siteConfig.ftpsState (ARM 51021); premiumSiteConfig sets Disabled, and FTP basic-auth publishing is off for both plans (ftpCredentials below)
  #checkov:skip=CKV_AZURE_15: Flex takes app settings only in siteConfig and defaults to TLS 1.2; premiumSiteConfig sets minTlsVersion 1.2 (checkov cannot follow the plan ternary)
  #checkov:skip=CKV_AZURE_18: HTTP/2 is set in premiumSiteConfig; Flex gets no App Service site properties (see the header)
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  #checkov:skip=CKV_AZURE_71: the site always has a managed identity (system- or user-assigned); checkov cannot follow the identity ternary
  #checkov:skip=CKV_AZURE_16: the app always runs with a managed identity; checkov cannot follow the identity ternary
  #checkov:skip=CKV_AZURE_67: HTTP/2 is set in premiumSiteConfig; Flex gets no App Service site properties
  identity: useUserAssigned ? {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${userAssignedIdentityId}': {}
    }
  } : {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    // Key Vault references (GRAPH_CLIENT_SECRET) resolve with the system-assigned identity unless
    // told otherwise (App Service docs, "Key Vault references", user-assigned identity section).
    keyVaultReferenceIdentity: useUserAssigned ? userAssignedIdentityId : 'SystemAssigned'
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: useUserAssigned ? {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: userAssignedIdentityId
          } : {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    } : null
    siteConfig: isFlex ? flexSiteConfig : premiumSiteConfig
  }
}

// Basic-auth publishing (FTP / SCM user+password) off: deploy with Entra ID (az CLI) only.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// Host storage: the host keeps leases, the timer's schedule monitor, function keys and (Flex) the
// deployment package in blobs: Storage Blob Data Owner is what the Functions docs require for
// AzureWebJobsStorage. Table Data Contributor lets the host write its diagnostic events.
// No Queue Data Contributor: it is only needed for blob triggers / Durable Functions, and our
// queues are Service Bus. The account holds nothing but host state, so account scope is the
// narrowest useful one (the host creates its containers itself).
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, assignmentKey, storageBlobDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: hostStorage
  name: guid(hostStorage.id, assignmentKey, storageTableDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Entra-authenticated telemetry ingestion (local auth is disabled on the component).
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: appInsights
  name: guid(appInsights.id, assignmentKey, monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output principalId string = principalId
