"""Detection inventories read from the clouds themselves (docs/cloud.md).

`bastion discover aws` reads an AWS account through boto3 (its standard credential chain and
settings, `AWS_ENDPOINT_URL` included): CloudTrail trails, CloudWatch Logs metric filters,
CloudWatch alarms, EventBridge rules, GuardDuty detectors, AWS Config (recorder and rules) and
Security Hub, one module per service family (`cloudtrail`, `cloudwatch`, `eventbridge`,
`guardduty`, `awsconfig`, `securityhub`). Each module collects what one region holds
(`collect`) and turns it into detections whose health is a chain (`chain`): a link that is
missing or off is named. `aws.discover` runs them and writes one snapshot of the account's
inventory through the detections importer (`snapshot`), with the same revisions and drift as
a file import. Managed services are mapped through the CTID mappings the tenant imported as
reference (`reference`); rules users write through the threat indicators.
"""
