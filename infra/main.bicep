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

@description('SKU of the Functions host storage account: Standard_ZRS (default, zone-redundant) or Standard_LRS for regions without availability zones (ZRS is refused there).')
@allowed([
  'Standard_ZRS'
  'Standard_LRS'
])
param hostStorageSku string = 'Standard_ZRS'

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
@description('NCRONTAB (6 fields, UTC) of the StartBilledExports timer (daily: catches invoices whenever they are published).')
param billedSchedule string = '0 30 6 * * *'
@description('NCRONTAB (6 fields, UTC) of the StartUnbilledExports timer (daily: unbilled usage is about a day behind).')
param unbilledSchedule string = '0 0 5 * * *'
@description('NCRONTAB of the Watchdog timer (resumes or fails runs that stopped moving).')
param watchdogSchedule string = '0 */5 * * * *'
@description('Comma-separated export kinds. With graphCredentialKind=managed-identity (no app registration), no exportInvoiceIds and no partners list, only the unbilled ones are deployed (output effectiveExportKinds).')
param exportKinds string = 'billedUsage,billedReconciliation,unbilledUsage,unbilledReconciliation'
@allowed([
  'full'
  'basic'
])
param exportAttributeSet string = 'full'
@description('Comma-separated invoice ids for billed exports; empty = discover from Partner Center (needs an app registration: graphClientId).')
param exportInvoiceIds string = ''
@description('What lands per partition: jsonl.gz (always), plus parquet for typed Parquet, the FOCUS view and the invoice check.')
param outputFormats string = 'jsonl.gz'
@description('FinOps hubs ingestion container in the destination account (needs parquet); empty = no hubs landing.')
param hubsIngestionContainer string = ''
@description('Currencies for unbilled exports besides those on the partner\'s invoices (learned from Partner Center); empty = the invoices\' currencies only (USD when none is known).')
param exportUnbilledCurrencies string = ''
param exportUnbilledPeriods string = 'current'
@description('partner-center: list the invoices in Partner Center (needs an app registration registered there: graphClientId); off: use exportInvoiceIds only. With graphCredentialKind=managed-identity and no partners list it is always off (output effectiveInvoiceDiscovery).')
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
@description('Data versions of one export kept besides the current one (KEEP_SUPERSEDED_VERSIONS); all = keep every version.')
param keepSupersededVersions string = '2'
@description('Lifecycle alternative to keepSupersededVersions, on a destination account this template creates: unbilled data older than this many days is deleted by the storage account itself (0 = no rule). Daily unbilled exports rewrite the current version every day, so only superseded or no-longer-refreshed versions age out.')
param unbilledExpiryDays int = 0
@description('Partner ids of a PARTNERS deployment, for unbilledExpiryDays (each partner has its own folder under destinationPrefix); empty = the single-partner layout.')
param unbilledExpiryPartnerIds array = []
param eventSource string = '/partner-billing-export'

// ---------- identities ----------
// Azure resources (host storage, destination storage, Service Bus, Event Grid, Application
// Insights) are always reached with the app's managed identity and Azure RBAC (AZURE_CREDENTIAL_KIND
// = managed-identity). Microsoft Graph and Partner Center use their own credential
// (GRAPH_CREDENTIAL_KIND). Recommended: federated-managed-identity, the partner's own Entra app
// registration (registered in Partner Center, Graph permission PartnerBilling.Read.All) that trusts
// the app's user-assigned identity as its federated credential: invoice discovery works and there
// is no secret to rotate. See docs/deploy.md step 5.
@description('system-assigned (default): the app\'s own identity; user-assigned: this template creates a user-assigned identity and runs the app as it. graphCredentialKind=federated-managed-identity always uses the user-assigned identity (Entra accepts only a user-assigned identity as an app registration\'s federated credential).')
@allowed([
  'system-assigned'
  'user-assigned'
])
param appIdentity string = 'system-assigned'

@description('Client (application) id of the partner\'s Entra app registration that calls Graph and Partner Center: Graph application permission PartnerBilling.Read.All with admin consent, registered in Partner Center (App management). Given: graphCredentialKind defaults to federated-managed-identity. Empty: the app\'s managed identity calls Graph itself (unbilled exports, or billed ones for fixed exportInvoiceIds only).')
param graphClientId string = ''

@description('Credential for Microsoft Graph / Partner Center. federated-managed-identity (the default when graphClientId is given; recommended): the app registration graphClientId, signing in with the app\'s user-assigned identity as its federated credential (no secret). managed-identity (the default without graphClientId): the app\'s identity with the PartnerBilling.Read.All app role; it cannot be registered in Partner Center, so invoice discovery is off and billed kinds need exportInvoiceIds. client-secret / client-certificate: the app registration graphClientId with a secret or certificate in Key Vault.')
@allowed([
  'federated-managed-identity'
  'managed-identity'
  'client-secret'
  'client-certificate'
])
param graphCredentialKind string = empty(graphClientId) ? 'managed-identity' : 'federated-managed-identity'
@description('Tenant of the Graph/Partner Center credential (the partner tenant); empty = this deployment\'s tenant.')
param graphTenantId string = ''
@description('client-secret: Key Vault secret URI holding the client secret (the app identity needs Key Vault Secrets User on it).')
param graphClientSecretUri string = ''
@description('client-certificate: Key Vault secret URI of the certificate (created with content type PEM, so the secret holds certificate and key as PEM; the app identity needs Key Vault Secrets User on it).')
param graphClientCertificateSecretUri string = ''
@description('Several partner tenants: the partner list as JSON (docs/operations.md, "Several partner tenants"); empty = one partner from the graph* parameters. Its credentials name app settings holding their secrets (Key Vault references), never the secrets. With a list, exportKinds and invoiceDiscovery are passed on as given (each entry may override them).')
param partners string = ''

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
var isGraphFederated = graphCredentialKind == 'federated-managed-identity'
var isGraphManagedIdentity = graphCredentialKind == 'managed-identity'
var isGraphClientSecret = graphCredentialKind == 'client-secret'
var isGraphClientCertificate = graphCredentialKind == 'client-certificate'
// Entra accepts only a user-assigned identity as an app registration's federated credential
// (Microsoft Entra, "Configure an application to trust a managed identity").
var useUserAssigned = (appIdentity == 'user-assigned') || isGraphFederated

// What the exports can do with the Graph credential. A plain managed identity cannot be registered
// in Partner Center, so it cannot list invoices; the handler refuses to start with
// GRAPH_CREDENTIAL_KIND=managed-identity, INVOICE_DISCOVERY=partner-center and a billed kind, and
// with INVOICE_DISCOVERY=off, a billed kind and no EXPORT_INVOICE_IDS. So for the single partner
// of the graph* parameters with a managed identity: discovery off, and the billed kinds only when
// exportInvoiceIds names the invoices. A partner list is passed on as given (its entries carry
// their own credentials; the handler checks each).
var billedNeedsFixedInvoices = isGraphManagedIdentity && empty(partners)
var unbilledKinds = [
  'unbilledUsage'
  'unbilledReconciliation'
]
var requestedUnbilledKinds = join(intersection(split(replace(exportKinds, ' ', ''), ','), unbilledKinds), ',')
// Only billed kinds requested: left as given, so the handler's start-up error names the fix.
var dropBilledKinds = billedNeedsFixedInvoices && empty(exportInvoiceIds) && !empty(requestedUnbilledKinds)
var effectiveExportKinds = dropBilledKinds ? requestedUnbilledKinds : exportKinds
var effectiveInvoiceDiscovery = billedNeedsFixedInvoices ? 'off' : invoiceDiscovery

// The federated identity credential the operator adds to the app registration (docs/deploy.md,
// step 5). Not declared here: that needs the Microsoft Graph Bicep extension, a Bicep-managed
// application (uniqueName) and Application.ReadWrite.All for whoever deploys.
var federatedCredentialIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
// Entra ID global service (US Government and China use other audiences, which the handler does not request).
var federatedCredentialAudience = 'api://AzureADTokenExchange'

// Optional user-assigned identity for the app (appIdentity = user-assigned, or federated Graph).
resource appUserIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = if (useUserAssigned) {
  name: '${namePrefix}-id-${suffix}'
  location: location
  tags: tags
}
var userAssignedIdentityId = useUserAssigned ? appUserIdentity.id : ''
var userAssignedIdentityClientId = useUserAssigned ? appUserIdentity.properties.clientId : ''
var userAssignedIdentityPrincipalId = useUserAssigned ? appUserIdentity.properties.principalId : ''

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
    sku: hostStorageSku
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

// Lifecycle prefixes start with the container: `{container}/{prefix}[/{partner}]/unbilled-`.
var partnerUnbilledPrefixes = [for id in unbilledExpiryPartnerIds: '${destinationContainer}/${destinationPrefix}/${id}/unbilled-']
var unbilledExpiryPrefixes = empty(unbilledExpiryPartnerIds) ? ['${destinationContainer}/${destinationPrefix}/unbilled-'] : partnerUnbilledPrefixes

// app-settings:begin (tests/deploy_layout.rs scans the names between these markers)
var baseHandlerSettings = {
  BILLED_SCHEDULE: billedSchedule
  UNBILLED_SCHEDULE: unbilledSchedule
  WATCHDOG_SCHEDULE: watchdogSchedule
  GRAPH_BASE_URL: graphBaseUrl
  GRAPH_API_VERSION: graphApiVersion
  PARTNER_CENTER_BASE_URL: partnerCenterBaseUrl
  EXPORT_KINDS: effectiveExportKinds
  EXPORT_ATTRIBUTE_SET: exportAttributeSet
  EXPORT_INVOICE_IDS: exportInvoiceIds
  OUTPUT_FORMATS: outputFormats
  // Empty is read as unset: no hubs landing.
  HUBS_INGESTION_CONTAINER: hubsIngestionContainer
  EXPORT_UNBILLED_CURRENCIES: exportUnbilledCurrencies
  EXPORT_UNBILLED_PERIODS: exportUnbilledPeriods
  INVOICE_DISCOVERY: effectiveInvoiceDiscovery
  POLL_DEADLINE_MINUTES: string(pollDeadlineMinutes)
  DEFAULT_RETRY_AFTER_SECONDS: string(defaultRetryAfterSeconds)
  MAX_RETRY_AFTER_SECONDS: string(maxRetryAfterSeconds)
  MAX_EXPORT_RESTARTS: string(maxExportRestarts)
  KEEP_SUPERSEDED_VERSIONS: keepSupersededVersions
  // Identity-based trigger connection and our REST sends (functionapp.bicep adds __credential
  // and, for a user-assigned identity, __clientId).
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  EVENTGRID_TOPIC_ENDPOINT: eventTopic.outputs.endpoint
  EVENT_SOURCE: eventSource
  DESTINATION_KIND: 'blob'
  DESTINATION_ACCOUNT_URL: 'https://${destinationName}.blob.${environment().suffixes.storage}'
  DESTINATION_CONTAINER: destinationContainer
  DESTINATION_PREFIX: destinationPrefix
  LOG_FORMAT: 'json'
  // Azure resources: always the app's managed identity.
  AZURE_CREDENTIAL_KIND: 'managed-identity'
  // Graph / Partner Center: their own credential.
  GRAPH_CREDENTIAL_KIND: graphCredentialKind
  GRAPH_TENANT_ID: empty(graphTenantId) ? tenant().tenantId : graphTenantId
}
// A user-assigned identity is named by its client id (system-assigned needs nothing).
var userAssignedHandlerSettings = useUserAssigned ? {
  AZURE_CLIENT_ID: userAssignedIdentityClientId
} : {}
var graphManagedIdentitySettings = (isGraphManagedIdentity && useUserAssigned) ? {
  GRAPH_CLIENT_ID: userAssignedIdentityClientId
} : {}
// Federated: GRAPH_CLIENT_ID is the app registration; the identity whose token is the client
// assertion is AZURE_CLIENT_ID (the user-assigned identity, set above).
var graphFederatedSettings = isGraphFederated ? {
  GRAPH_CLIENT_ID: graphClientId
} : {}
// The secret never appears in templates or app settings: a Key Vault reference, resolved by the
// platform with the app's identity.
// https://learn.microsoft.com/azure/app-service/app-service-key-vault-references
var graphClientSecretSettings = isGraphClientSecret ? {
  GRAPH_CLIENT_ID: graphClientId
  GRAPH_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${graphClientSecretUri})'
} : {}
var graphClientCertificateSettings = isGraphClientCertificate ? {
  GRAPH_CLIENT_ID: graphClientId
  GRAPH_CLIENT_CERTIFICATE: '@Microsoft.KeyVault(SecretUri=${graphClientCertificateSecretUri})'
} : {}
// Several partner tenants: the list carries setting names, never secrets.
var partnersSettings = empty(partners) ? {} : {
  PARTNERS: partners
}
// app-settings:end
var handlerSettings = union(
  baseHandlerSettings,
  userAssignedHandlerSettings,
  graphManagedIdentitySettings,
  graphFederatedSettings,
  graphClientSecretSettings,
  graphClientCertificateSettings,
  partnersSettings
)

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
    userAssignedIdentityId: userAssignedIdentityId
    userAssignedIdentityClientId: userAssignedIdentityClientId
    userAssignedIdentityPrincipalId: userAssignedIdentityPrincipalId
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
    hubsContainerName: hubsIngestionContainer
    principalId: functionApp.outputs.principalId
    unbilledExpiryDays: unbilledExpiryDays
    unbilledExpiryPrefixes: unbilledExpiryPrefixes
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
// The identity the app runs as (the user-assigned one when there is one).
output functionAppPrincipalId string = functionApp.outputs.principalId
output managedIdentityClientId string = userAssignedIdentityClientId
// The Graph credential as deployed, and what the exports do with it.
output graphCredentialKind string = graphCredentialKind
output effectiveExportKinds string = effectiveExportKinds
output effectiveInvoiceDiscovery string = effectiveInvoiceDiscovery
// federated-managed-identity: the federated identity credential to add to the app registration
// graphClientId (`az ad app federated-credential create --id <appId> --parameters <this, as JSON>`).
output federatedCredentialIssuer string = federatedCredentialIssuer
output federatedCredentialSubject string = functionApp.outputs.principalId
output federatedCredentialAudience string = federatedCredentialAudience
output federatedCredential object = {
  name: '${appName}-identity'
  issuer: federatedCredentialIssuer
  subject: functionApp.outputs.principalId
  audiences: [
    federatedCredentialAudience
  ]
  description: 'partner-billing-export: the Function App ${appName} signs in as this app with its user-assigned identity'
}
output eventGridTopicEndpoint string = eventTopic.outputs.endpoint
output serviceBusNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output destinationStorageAccount string = destinationName
output destinationContainer string = destinationContainer
output hostStorageAccount string = hostStorage.outputs.name
output deploymentContainerUrl string = hostStorage.outputs.deploymentContainerUrl
output packageBlobName string = packageBlobName
output appInsightsName string = monitoring.outputs.appInsightsName
