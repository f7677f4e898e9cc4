"""The one pydantic base class every threadline model derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A pydantic model whose validator is built on first use, not at import.

    Building the validators of all our models at import was the largest part of a
    handler's cold start (~100 M instructions of ~1 000 M). Every model must share this:
    a model built at import builds the schemas of the deferred models it refers to, so
    deferring only some of them costs more than deferring none. Subclasses add their own
    options; pydantic merges them with this one.
    """

    model_config = ConfigDict(defer_build=True)
