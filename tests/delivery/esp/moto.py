"""moto's AWS emulator as a real process on loopback, with IAM auth on: requests must carry a
valid SigV4 signature of a key moto issued (so the signing is checked, not only accepted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx

from tests.support.smtp import free_port

REGION = "us-east-1"
# The first actions are unauthenticated (IAM user, its key, its policy); every later one
# must be signed with that key.
SETUP_ACTIONS = 3


@dataclass(frozen=True)
class Moto:
    url: str
    access_key_id: str
    secret_access_key: str

    def raw_messages(self) -> dict[str, dict[str, object]]:
        """What moto's SES received, by MessageId: source, destinations, raw_data."""
        models = httpx.get(f"{self.url}/moto-api/data.json", timeout=10).json()
        return {m["id"]: m for m in models["ses"]["RawMessage"]}


@contextmanager
def moto_server(log: Path) -> Iterator[Moto]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS),
            "AWS_ACCESS_KEY_ID": "setup",
            "AWS_SECRET_ACCESS_KEY": "setup",
        }
    )
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"moto exited with {process.returncode}: see {log}")
            try:
                httpx.get(f"{url}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError("moto did not start within 60 s") from None
                time.sleep(0.05)
        iam = boto3.client(
            "iam",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="mailq")
        key = iam.create_access_key(UserName="mailq")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ses:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="mailq", PolicyName="ses", PolicyDocument=json.dumps(policy))
        moto = Moto(url, key["AccessKeyId"], key["SecretAccessKey"])
        ses = boto3.client(
            "sesv2",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=moto.access_key_id,
            aws_secret_access_key=moto.secret_access_key,
        )
        ses.create_email_identity(EmailIdentity="example.com")
        yield moto
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
