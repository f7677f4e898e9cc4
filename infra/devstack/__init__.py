"""devstack: template.yaml running on 127.0.0.1, with no AWS account and no Docker.

``python -m devstack`` (``make dev``) starts moto in server mode (or uses
``AWS_ENDPOINT_URL``), creates the template's resources and secrets in it, runs
each function in Lambda-like worker processes with exactly its template
environment, and serves the HTTP API routes on ``THREADLINE_PORT`` as API Gateway
would. See README.md beside this file.
"""
