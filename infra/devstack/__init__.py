"""devstack: template.yaml running on 127.0.0.1, with no AWS account and no Docker.

``python -m devstack`` (``make dev``) starts moto in server mode (or uses
``AWS_ENDPOINT_URL``), creates the template's resources and secrets in it, runs
each function in Lambda-like worker processes with exactly its template
environment, serves the HTTP API routes on ``THREADLINE_PORT`` as API Gateway
would, feeds SQS and DynamoDB-stream events to their functions as Lambda's event
source mappings do, and serves the local-only ``/_dev`` routes (provider sandbox,
outbox, event log) beside the API. See docs/local-stack.md.
"""
