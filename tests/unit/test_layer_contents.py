"""The Lambda layer ships only shared/requirements.lock, and twilio.rest's Api domain.

The Makefile's LAYER_NOT_SHIPPED packages (twilio's asyncio client and JWT helpers)
and the twilio.rest products shared/Makefile prunes are made unimportable here;
every handler must still import and the Twilio REST client must still send (to a
server on 127.0.0.1 that answers as Twilio does).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT, load_template, serverless_functions

# Import names of the distributions the layer leaves out (boto3's family is the
# Lambda runtime's own and stays importable), and what phonenumberslite lacks.
NOT_SHIPPED_MODULES = [
    "aiohttp",
    "aiohttp_retry",
    "aiohappyeyeballs",
    "aiosignal",
    "attr",
    "attrs",
    "frozenlist",
    "multidict",
    "propcache",
    "yarl",
    "jwt",
    "phonenumbers.geocoder",
    "phonenumbers.carrier",
    "phonenumbers.timezone",
    "phonenumbers.geodata",
]

CHECK = textwrap.dedent(
    """
    import importlib, json, sys, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    BLOCKED = set(sys.argv[1].split(","))

    class NotInTheLayer:
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            pruned = name.startswith("twilio.rest.") and name.split(".")[2] != "api"
            if top in BLOCKED or name in BLOCKED or pruned:
                raise ImportError(f"{name} is not in the Lambda layer")
            return None

    sys.meta_path.insert(0, NotInTheLayer())
    for directory, module in json.loads(sys.argv[2]):
        sys.path.insert(0, directory)
        importlib.import_module(module)
        del sys.modules[module]
        sys.path.remove(directory)

    class Twilio(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"sid": "SM" + "0" * 32, "status": "queued"}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Twilio)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    from twilio.http.http_client import TwilioHttpClient
    from twilio.request_validator import RequestValidator
    from twilio.rest import Client
    from twilio.twiml.voice_response import VoiceResponse

    class Local(TwilioHttpClient):
        def request(self, method, url, *args, **kwargs):
            local = url.replace("https://api.twilio.com", f"http://127.0.0.1:{server.server_port}")
            return super().request(method, local, *args, **kwargs)

    client = Client("AC" + "0" * 32, "token", http_client=Local(timeout=5))
    sent = client.messages.create(to="+15551230000", from_="+15557650000", body="hi")
    assert sent.sid == "SM" + "0" * 32, sent.sid
    assert RequestValidator("token").compute_signature("https://x.test/", {"a": "b"})
    assert "<Say>" in str(VoiceResponse().say("hello"))
    import phonenumbers
    assert phonenumbers.is_valid_number(phonenumbers.parse("+4915112345678"))
    print("ok")
    """
)


def _layer_not_shipped() -> list[str]:
    makefile = (REPO_ROOT / "Makefile").read_text()
    match = re.search(r"^LAYER_NOT_SHIPPED := (.*?)\n(?!\t)", makefile, re.M | re.S)
    assert match is not None
    return match.group(1).replace("\\", " ").split()


def test_the_lock_leaves_out_exactly_the_packages_the_check_blocks():
    lock = (REPO_ROOT / "shared" / "requirements.lock").read_text()
    pinned = {line.split("==")[0] for line in lock.splitlines() if "==" in line}
    not_shipped = set(_layer_not_shipped())
    assert not pinned & not_shipped
    assert {"twilio", "requests", "phonenumberslite", "aws-xray-sdk"} <= pinned
    assert "phonenumbers" not in pinned
    twilio_family = not_shipped - {"boto3", "botocore", "s3transfer", "jmespath"}
    twilio_family -= {"python-dateutil", "six"}
    modules = {name.replace("-", "_") for name in twilio_family} - {"pyjwt", "attrs"}
    assert modules | {"jwt", "attr"} <= set(NOT_SHIPPED_MODULES)


def _value(value) -> str:
    """A parameter reference becomes its default; anything else a placeholder."""
    parameters = load_template()["Parameters"]
    if isinstance(value, dict) and value.get("Ref") in parameters:
        return str(parameters[value["Ref"]].get("Default", ""))
    return value if isinstance(value, str) else "placeholder"


def test_handlers_import_and_twilio_sends_without_what_the_layer_leaves_out():
    globals_ = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    env = {name: _value(value) for name, value in globals_.items()}
    handlers = []
    for properties in serverless_functions().values():
        for name, value in (properties.get("Environment") or {}).get("Variables", {}).items():
            env.setdefault(name, _value(value))
        handlers.append(
            (str(REPO_ROOT / properties["CodeUri"]), properties["Handler"].rpartition(".")[0])
        )
    env.update(PATH=os.environ.get("PATH", ""), AWS_DEFAULT_REGION="us-east-1")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {str(REPO_ROOT / 'shared')!r}); exec({CHECK!r})",
            ",".join(NOT_SHIPPED_MODULES),
            json.dumps(handlers),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
