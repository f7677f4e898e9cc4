"""Provider secrets, read from SSM Parameter Store (SecureString) or Secrets Manager.

The function's environment names where the secret lives (``<NAME>_PARAM``), never
the secret itself. Values are cached for five minutes by powertools, so a rotated
secret is picked up without a redeploy and a warm function makes no extra call.
"""

from __future__ import annotations

from threadline.settings import required_env

_MAX_AGE_SECONDS = 300


def get_secret(name: str) -> str:
    """The secret ``name`` (e.g. ``TWILIO_AUTH_TOKEN``), located by ``<name>_PARAM``.

    A location that starts with ``secretsmanager:`` is read from Secrets Manager,
    anything else is an SSM parameter name, decrypted.
    """
    location = required_env(f"{name}_PARAM")
    # powertools.parameters pulls in boto3 and its providers; import on first use so
    # handlers that never need a secret do not pay for it at cold start.
    from aws_lambda_powertools.utilities import parameters

    if location.startswith("secretsmanager:"):
        value = parameters.get_secret(
            location.removeprefix("secretsmanager:"), max_age=_MAX_AGE_SECONDS
        )
    else:
        value = parameters.get_parameter(location, decrypt=True, max_age=_MAX_AGE_SECONDS)
    if not isinstance(value, str) or not value:
        raise RuntimeError(f"secret {name} is empty")
    return value
