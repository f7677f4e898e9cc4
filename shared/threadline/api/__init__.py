"""The /v1 REST API: one powertools router per tag, one resolver that includes them.

`resolver.py` builds the resolver, includes every router and holds the one mapping
from errors to answers; `errors.py` is the error body and its OpenAPI description;
`dependencies.py` builds what the routers share (stores, services) once per Lambda
environment. Each router module is thin: parse, call the domain, answer.
"""
