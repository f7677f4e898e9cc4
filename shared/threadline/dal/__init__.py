"""Data access: the interface the domain logic writes plans against (``base``) and
the one module that turns those plans into DynamoDB requests (``dynamodb``)."""
