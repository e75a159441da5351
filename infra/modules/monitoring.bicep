// Log Analytics workspace + workspace-based Application Insights.
// Local (key) auth is disabled on App Insights: the function app sends telemetry with its managed
// identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD + Monitoring Metrics
// Publisher, granted in functionapp.bicep), so the instrumentation key in the connection string is
// only an address, not a credential.

param location string
param tags object
param workspaceName string
param appInsightsName string
@minValue(30)
param retentionInDays int

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output workspaceId string = workspace.id
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
output connectionString string = appInsights.properties.ConnectionString
