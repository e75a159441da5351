// Two alerts that need a human:
//  1. a message was dead-lettered on either queue (a poll or a copy gave up after
//     maxDeliveryCount tries, or expired): Service Bus metric DeadletteredMessages > 0;
//  2. an export run failed: the handler logs `export run failed` (field `run_id`) at error level
//     whenever a run ends failed (Graph operation failed, 410 restarts exhausted, deadline
//     passed). Handler stdout reaches Application Insights `traces` through the Functions host.

param location string
param tags object
param namePrefix string
param serviceBusNamespaceId string
param appInsightsId string
@description('E-mail for alert notifications; empty = alerts fire without an action group.')
param alertEmail string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: '${namePrefix}-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take(replace(namePrefix, '-', ''), 12)
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = empty(alertEmail) ? [] : [
  {
    actionGroupId: actionGroup.id
  }
]

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-dead-lettered-messages'
  location: 'global'
  tags: tags
  properties: {
    description: 'A message on export-operations or export-partitions was dead-lettered. Inspect the DLQ (docs/deploy.md).'
    severity: 2
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    // DeadletteredMessages is a gauge (messages currently in the DLQ): the alert stays active
    // until someone drains or resubmits them, which is what we want.
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadLettered'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource failedExports 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${namePrefix}-export-run-failed'
  location: location
  tags: tags
  properties: {
    displayName: '${namePrefix}: export run failed'
    description: 'The handler logged "export run failed" (an export run ended in the failed state).'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          // Matches both the JSON log line (LOG_FORMAT=json) and the text format; run_id is
          // pulled out for the alert payload.
          query: 'traces | where message has "export run failed" | extend run_id = extract(@"run_id\\W+([A-Za-z0-9_-]+)", 1, message) | summarize failures = count() by run_id'
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: empty(alertEmail) ? [] : [
        actionGroup.id
      ]
    }
  }
}
