"""Provider secrets in the embedded AWS, where the functions look for them.

Deployed, an operator puts each secret into SSM by hand before `sam deploy`; the
template only names where it lives, through a parameter ending in
``ParameterName``. Locally the secret comes from the developer's environment
(``TwilioAuthTokenParameterName`` -> ``TWILIO_AUTH_TOKEN``) or is generated, and
is put where the template says.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from devstack.aws import AwsTarget
from devstack.resources import StackResources
from devstack.template import TemplateError

PARAMETER_SUFFIX = "ParameterName"
# threadline.secrets reads locations with this prefix from Secrets Manager.
SECRETS_MANAGER_PREFIX = "secretsmanager:"
_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

Source = Literal["environment", "generated", "existing"]

# Generated values shaped like the real thing, for secrets whose shape is checked
# (a Twilio Account SID is "AC" + 32 hex digits, and appears in API paths).
_SHAPED_GENERATORS: dict[str, Callable[[], str]] = {
    "TWILIO_ACCOUNT_SID": lambda: "AC" + secrets.token_hex(16),
    # A bot token is "<bot id>:<35 characters>" and sits in every Bot API path; the
    # secret_token Telegram echoes allows only A-Z, a-z, 0-9, _ and - (token_hex is).
    "TELEGRAM_BOT_TOKEN": lambda: (
        f"{secrets.randbelow(9 * 10**9) + 10**9}:" + secrets.token_urlsafe(26)[:35]
    ),
}


def generate_secret(env_name: str) -> str:
    """A random value for the secret ``env_name``, in its real shape where one is known."""
    generator = _SHAPED_GENERATORS.get(env_name)
    return generator() if generator is not None else secrets.token_hex(16)


@dataclass(frozen=True)
class ProvisionedSecret:
    parameter: str  # template parameter, e.g. TwilioAuthTokenParameterName
    env_name: str  # where the developer sets it, e.g. TWILIO_AUTH_TOKEN
    location: str  # SSM parameter name (or secretsmanager:<name>)
    value: str
    source: Source


def secret_env_name(parameter: str) -> str | None:
    """``TwilioAuthTokenParameterName`` -> ``TWILIO_AUTH_TOKEN``; None if not a secret."""
    if not parameter.endswith(PARAMETER_SUFFIX) or parameter == PARAMETER_SUFFIX:
        return None
    stem = parameter.removesuffix(PARAMETER_SUFFIX)
    return _WORD_BOUNDARY.sub("_", stem).upper()


def default_secret_location(parameter: str, stage: str) -> str:
    """Where an empty secret parameter points, as the template's ``!If`` fallback says.

    ``TwilioAuthTokenParameterName`` in stage ``dev`` -> ``/threadline/dev/twilio/auth-token``
    (the first word names the provider, the rest the secret).
    """
    provider, _, rest = _WORD_BOUNDARY.sub("_", parameter.removesuffix(PARAMETER_SUFFIX)).partition(
        "_"
    )
    return f"/threadline/{stage}/{provider.lower()}/{rest.replace('_', '-').lower()}"


def _location(stack: StackResources, parameter: str) -> str:
    return str(stack.parameters[parameter]) or default_secret_location(
        parameter, str(stack.parameters["Stage"])
    )


def secret_parameters(stack: StackResources) -> dict[str, str]:
    """Template parameter -> environment variable, for every secret parameter."""
    found = {}
    for parameter in stack.template.parameters:
        env_name = secret_env_name(parameter)
        if env_name is not None:
            found[parameter] = env_name
    return found


def provision_secrets(stack: StackResources, environ: Mapping[str, str]) -> list[ProvisionedSecret]:
    """Put every secret the template names into the embedded AWS.

    The value is the developer's environment variable when set; else one already
    stored (a persistent endpoint keeps its secrets across restarts); else a new
    random one, which the caller prints so test requests can be signed with it.
    """
    provisioned = []
    for parameter, env_name in secret_parameters(stack).items():
        location = _location(stack, parameter)
        from_environment = environ.get(env_name)
        if from_environment:
            put_secret(stack.aws, location, from_environment)
            provisioned.append(
                ProvisionedSecret(parameter, env_name, location, from_environment, "environment")
            )
            continue
        existing = read_secret(stack.aws, location)
        if existing is not None:
            provisioned.append(
                ProvisionedSecret(parameter, env_name, location, existing, "existing")
            )
            continue
        generated = generate_secret(env_name)
        put_secret(stack.aws, location, generated)
        provisioned.append(ProvisionedSecret(parameter, env_name, location, generated, "generated"))
    return provisioned


def secret_location(stack: StackResources, parameter: str) -> str:
    if secret_env_name(parameter) is None or parameter not in stack.parameters:
        raise TemplateError(f"{parameter} is not a secret parameter of the template")
    return _location(stack, parameter)


def put_secret(aws: AwsTarget, location: str, value: str) -> None:
    """Store ``value`` at ``location``: an SSM SecureString, or a Secrets Manager secret."""
    if location.startswith(SECRETS_MANAGER_PREFIX):
        client: Any = aws.client("secretsmanager")
        name = location.removeprefix(SECRETS_MANAGER_PREFIX)
        try:
            client.create_secret(Name=name, SecretString=value)
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=name, SecretString=value)
        return
    aws.client("ssm").put_parameter(Name=location, Value=value, Type="SecureString", Overwrite=True)


def read_secret(aws: AwsTarget, location: str) -> str | None:
    """The value stored at ``location``, or None when there is none."""
    from botocore.exceptions import ClientError

    try:
        if location.startswith(SECRETS_MANAGER_PREFIX):
            client: Any = aws.client("secretsmanager")
            name = location.removeprefix(SECRETS_MANAGER_PREFIX)
            return str(client.get_secret_value(SecretId=name)["SecretString"])
        ssm: Any = aws.client("ssm")
        return str(ssm.get_parameter(Name=location, WithDecryption=True)["Parameter"]["Value"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return None
        raise


_NOT_FOUND = {"ParameterNotFound", "ResourceNotFoundException"}
