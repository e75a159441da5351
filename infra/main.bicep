// partner-billing-export: everything one deployment needs, in one resource group (the destination
// storage account may live elsewhere). Deploy with:
//   az deployment group create -g <rg> -f infra/main.bicep -p @infra/main.parameters.json
// See docs/deploy.md for the whole procedure, including the Graph permission, which ARM cannot grant.

targetScope = 'resourceGroup'

// ---------- naming and placement ----------
@description('Short lowercase prefix for resource names (letters and digits, 3-11 chars).')
@minLength(3)
@maxLength(11)
param namePrefix string

@description('Region for all resources.')
param location string = resourceGroup().location

param tags object = {
  app: 'partner-billing-export'
}

// ---------- hosting ----------
@description('flex = Flex Consumption FC1 (default); premium = Elastic Premium EP1 (documented alternative).')
@allowed([
  'flex'
  'premium'
])
param hostingPlan string = 'flex'

@description('Flex: memory per instance. 2048 MB is plenty for streaming copies.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex: scale-out cap. Keeps Graph/Partner Center throttling and cost bounded.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Premium: maximum elastic workers.')
@minValue(1)
@maxValue(100)
param premiumMaximumElasticWorkerCount int = 5

// ---------- destination (partner storage) ----------
@description('true: create the destination storage account; false: use an existing one named destinationStorageAccountName.')
param createDestinationStorage bool = true

@description('Destination storage account name; empty = derived from namePrefix (only when created here).')
@maxLength(24)
param destinationStorageAccountName string = ''

@description('Resource group of an existing destination account; empty = this resource group.')
param destinationResourceGroup string = ''

param destinationContainer string = 'billing-exports'
param destinationPrefix string = 'partner-billing'

// ---------- exports (see src/settings.rs for meaning and defaults) ----------
@description('NCRONTAB (6 fields, UTC) of the monthly StartExports timer.')
param exportSchedule string = '0 0 6 5 * *'
param exportKinds string = 'billedUsage,billedReconciliation,unbilledUsage,unbilledReconciliation'
@allowed([
  'full'
  'basic'
])
param exportAttributeSet string = 'full'
@description('Comma-separated invoice ids for billed exports; empty = discover from Partner Center.')
param exportInvoiceIds string = ''
param exportUnbilledCurrencies string = 'USD'
param exportUnbilledPeriods string = 'current'
@description('partner-center: list last month\'s invoices (needs Partner Center API access); off: use exportInvoiceIds only.')
@allowed([
  'partner-center'
  'off'
])
param invoiceDiscovery string = 'partner-center'
@allowed([
  'v1.0'
  'beta'
])
param graphApiVersion string = 'v1.0'
param graphBaseUrl string = 'https://graph.microsoft.com'
param partnerCenterBaseUrl string = 'https://api.partnercenter.microsoft.com'
param pollDeadlineMinutes int = 1440
param defaultRetryAfterSeconds int = 30
param maxRetryAfterSeconds int = 3600
param maxExportRestarts int = 3
param eventSource string = '/partner-billing-export'

// ---------- identity for Graph / Partner Center ----------
@description('managed-identity (default): the app\'s system-assigned identity calls Graph; client-secret: an app registration whose secret is in Key Vault.')
@allowed([
  'managed-identity'
  'client-secret'
])
param credentialKind string = 'managed-identity'
@description('client-secret only: the app registration\'s client id.')
param graphAppClientId string = ''
@description('client-secret only: Key Vault secret URI holding the client secret (the app identity needs Key Vault Secrets User on it).')
param graphAppClientSecretUri string = ''

// ---------- notifications and monitoring ----------
@description('Optional HTTPS webhook for an example Event Grid subscription; empty = none.')
param eventSubscriptionWebhookUrl string = ''
@description('Optional e-mail for alerts; empty = alerts without notifications.')
param alertEmail string = ''
@minValue(30)
param logRetentionDays int = 30

// ---------- names ----------
var suffix = uniqueString(resourceGroup().id, namePrefix)
var appName = '${namePrefix}-func-${suffix}'
var hostStorageName = take('${namePrefix}host${suffix}', 24)
var destinationName = empty(destinationStorageAccountName) ? take('${namePrefix}data${suffix}', 24) : destinationStorageAccountName
var destinationRg = empty(destinationResourceGroup) ? resourceGroup().name : destinationResourceGroup
// Must match functions/*/function.json and src/functions/mod.rs.
var queueNames = [
  'export-operations'
  'export-partitions'
]
var deploymentContainerName = 'app-package'
var packageBlobName = 'partner-billing-export.zip'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: '${namePrefix}-logs-${suffix}'
    appInsightsName: '${namePrefix}-ai-${suffix}'
    retentionInDays: logRetentionDays
  }
}

module hostStorage 'modules/hoststorage.bicep' = {
  name: 'host-storage'
  params: {
    location: location
    tags: tags
    name: hostStorageName
    deploymentContainerName: deploymentContainerName
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'service-bus'
  params: {
    location: location
    tags: tags
    name: '${namePrefix}-sb-${suffix}'
    queueNames: queueNames
  }
}

module eventTopic 'modules/eventgrid.bicep' = {
  name: 'event-grid'
  params: {
    location: location
    tags: tags
    name: '${namePrefix}-events-${suffix}'
    webhookUrl: eventSubscriptionWebhookUrl
  }
}

// app-settings:begin (tests/deploy_layout.rs scans the names between these markers)
var baseHandlerSettings = {
  EXPORT_SCHEDULE: exportSchedule
  GRAPH_BASE_URL: graphBaseUrl
  GRAPH_API_VERSION: graphApiVersion
  PARTNER_CENTER_BASE_URL: partnerCenterBaseUrl
  EXPORT_KINDS: exportKinds
  EXPORT_ATTRIBUTE_SET: exportAttributeSet
  EXPORT_INVOICE_IDS: exportInvoiceIds
  EXPORT_UNBILLED_CURRENCIES: exportUnbilledCurrencies
  EXPORT_UNBILLED_PERIODS: exportUnbilledPeriods
  INVOICE_DISCOVERY: invoiceDiscovery
  POLL_DEADLINE_MINUTES: string(pollDeadlineMinutes)
  DEFAULT_RETRY_AFTER_SECONDS: string(defaultRetryAfterSeconds)
  MAX_RETRY_AFTER_SECONDS: string(maxRetryAfterSeconds)
  MAX_EXPORT_RESTARTS: string(maxExportRestarts)
  // Identity-based trigger connection (system-assigned identity) and our REST sends.
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  EVENTGRID_TOPIC_ENDPOINT: eventTopic.outputs.endpoint
  EVENT_SOURCE: eventSource
  DESTINATION_KIND: 'blob'
  DESTINATION_ACCOUNT_URL: 'https://${destinationName}.blob.${environment().suffixes.storage}'
  DESTINATION_CONTAINER: destinationContainer
  DESTINATION_PREFIX: destinationPrefix
  CREDENTIAL_KIND: credentialKind
  LOG_FORMAT: 'json'
}
// client-secret: an app registration instead of the managed identity for Graph/Partner Center.
var clientSecretSettings = credentialKind == 'client-secret' ? {
  AZURE_CLIENT_ID: graphAppClientId
  AZURE_TENANT_ID: tenant().tenantId
  AZURE_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${graphAppClientSecretUri})'
} : {}
// app-settings:end
var handlerSettings = union(baseHandlerSettings, clientSecretSettings)

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  params: {
    location: location
    tags: tags
    appName: appName
    planName: '${namePrefix}-plan-${suffix}'
    hostingPlan: hostingPlan
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    premiumMaximumElasticWorkerCount: premiumMaximumElasticWorkerCount
    hostStorageName: hostStorage.outputs.name
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    packageBlobName: packageBlobName
    appInsightsName: monitoring.outputs.appInsightsName
    appInsightsConnectionString: monitoring.outputs.connectionString
    handlerSettings: handlerSettings
  }
}

module serviceBusAccess 'modules/servicebus-access.bicep' = {
  name: 'service-bus-access'
  params: {
    namespaceName: serviceBus.outputs.name
    queueNames: queueNames
    principalId: functionApp.outputs.principalId
  }
}

module eventTopicAccess 'modules/eventgrid-access.bicep' = {
  name: 'event-grid-access'
  params: {
    topicName: eventTopic.outputs.name
    principalId: functionApp.outputs.principalId
  }
}

module destination 'modules/destination.bicep' = {
  name: 'destination-storage'
  scope: resourceGroup(destinationRg)
  params: {
    location: location
    tags: tags
    name: destinationName
    createAccount: createDestinationStorage
    containerName: destinationContainer
    principalId: functionApp.outputs.principalId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    tags: tags
    namePrefix: namePrefix
    serviceBusNamespaceId: serviceBus.outputs.id
    appInsightsId: monitoring.outputs.appInsightsId
    alertEmail: alertEmail
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppHostName string = functionApp.outputs.defaultHostName
output functionAppPrincipalId string = functionApp.outputs.principalId
output eventGridTopicEndpoint string = eventTopic.outputs.endpoint
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output destinationStorageAccount string = destinationName
output destinationContainer string = destinationContainer
output hostStorageAccount string = hostStorage.outputs.name
output deploymentContainerUrl string = hostStorage.outputs.deploymentContainerUrl
output packageBlobName string = packageBlobName
output appInsightsName string = monitoring.outputs.appInsightsName
