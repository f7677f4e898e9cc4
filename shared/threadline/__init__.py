"""threadline: channel webhooks normalized onto one customer timeline.

The package is the Lambda layer's domain code: the common schema
(:mod:`threadline.schema`), one module per channel (:mod:`threadline.channels`),
the timeline store (:mod:`threadline.store`) and the webhook pipeline that ties a
channel to the store (:mod:`threadline.webhook`). Handlers under ``functions/`` only
parse, call into here, and answer.
"""

__version__ = "0.1.0"
