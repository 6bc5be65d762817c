"""``facegate local serve`` as a new user meets it: a separate process, reached over real HTTP.

GIVEN ``facegate local serve`` started as its own process (its state in that process's memory) WHEN,
from this process and from the CLI's real entry point, an operator onboards a tenant (register,
approve, a refused application, a user), the tenant's person signs in with SRP, enrols a folder,
searches with the CLI and with the SDK, reviews, erases and exports the audit log, and a tenant system
uploads a probe with boto3 THEN each step answers as documented (exit codes, reason codes), the upload
starts Recognize in the server, IAM still confines each session there, and every step is in the
server's JSON logs and the tenant's audit export.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _images import chip_png
from _serve import FACEGATE, ROOT, clean_environment, local_serve, log_lines
from facegate_sdk import FacegateClient, RefusedError
from facegate_sdk.auth import ClientCredentials, CognitoSession, StaticToken

from facegate import datasets
from facegate.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUSED

TENANT = "hmp-serve"
PASSWORD = "Serve-password-12345"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with local_serve(tmp_path_factory.mktemp("serve")) as state:
        yield state


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FACEGATE, *args], env={**clean_environment(), **env}, cwd=cwd or ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def _operator(served: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return _run(["operator", *args], served["operator"])


@pytest.fixture(scope="module")
def onboarded(served: dict[str, Any]) -> dict[str, str]:
    """The operator CLI, from another process, onboards TENANT and a person of it."""
    register = _operator(
        served, "tenants", "register", TENANT, "--name", "HMP Serve", "--sector", "corrections",
        "--country", "GB", "--jurisdiction", "GB-ENG",
    )  # fmt: skip
    assert register.returncode == EXIT_OK, register.stderr
    approve = _operator(
        served, "use-cases", "approve", TENANT, "--use-case", "access_control", "--deployment", "closed_facility"
    )
    assert approve.returncode == EXIT_OK, approve.stderr
    user = _operator(served, "users", "create", TENANT, "officer-serve", "--password", PASSWORD, "--json")
    assert user.returncode == EXIT_OK, user.stderr
    assert json.loads(user.stdout) == {"tenant_id": TENANT, "username": "officer-serve"}
    for reviewer in ("reviewer-one", "reviewer-two"):  # access control obliges two-person confirmation
        created = _operator(served, "users", "create", TENANT, reviewer, "--password", PASSWORD)
        assert created.returncode == EXIT_OK, created.stderr
    return {"username": "officer-serve"}


def _sign_in(served: dict[str, Any], username: str = "officer-serve") -> CognitoSession:
    pool = _outputs(served)["UserPoolId"]
    client_id = served["tenant"]["FACEGATE_USER_POOL_CLIENT_ID"]
    return CognitoSession.sign_in(
        username, PASSWORD, user_pool_id=pool, client_id=client_id, region=served["region"],
        endpoint=served["aws_endpoint"],
    )  # fmt: skip


def _outputs(served: dict[str, Any]) -> dict[str, str]:
    import boto3

    cfn = boto3.client(
        "cloudformation",
        endpoint_url=served["aws_endpoint"],
        region_name=served["region"],
        aws_access_key_id=served["operator"]["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=served["operator"]["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=served["operator"]["AWS_SESSION_TOKEN"],
    )
    (stack,) = cfn.describe_stacks(StackName=served["stack"])["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def _tenant_env(served: dict[str, Any], session: CognitoSession) -> dict[str, str]:
    return {
        "FACEGATE_API_URL": served["api_url"],
        "FACEGATE_TOKEN": session.token(),
        "FACEGATE_REFRESH_TOKEN": session.refresh_token,
        "FACEGATE_USER_POOL_CLIENT_ID": session.client_id,
        "AWS_ENDPOINT_URL": served["aws_endpoint"],
        "AWS_ENDPOINT_URL_COGNITO_IDP": served["aws_endpoint"],
        "AWS_REGION": served["region"],
    }


def _people(n: int) -> dict[str, list[Path]]:
    return dict(list(datasets.johns().items())[:n])


def test_the_stack_tells_other_processes_where_it_is(served: dict[str, Any]) -> None:
    """state.json, tenant.env and operator.env name the endpoint, the API, the region and credentials;
    the stack's outputs answer ``describe_stacks`` there, as on AWS."""
    for name in ("tenant.env", "operator.env"):
        text = (served["folder"] / name).read_text()
        assert f"export AWS_ENDPOINT_URL='{served['aws_endpoint']}'" in text
    assert served["api_url"].startswith("http://127.0.0.1:")
    outputs = _outputs(served)
    assert outputs["ProbeBucketName"] == served["bucket"]
    assert outputs["TablePrefix"] == served["stack"]


def test_an_operator_onboards_a_tenant_and_a_refusal_says_why(
    served: dict[str, Any], onboarded: dict[str, str]
) -> None:
    """From another process: the tenant is listed with its approval; a city camera network is refused
    (exit 3, the reason codes on the one line); a vocabulary value is bad input (exit 2, no traceback)."""
    listed = _operator(served, "tenants", "list", "--json")
    assert listed.returncode == EXIT_OK, listed.stderr
    (tenant,) = [t for t in json.loads(listed.stdout) if t["tenant_id"] == TENANT]
    assert [(a["use_case"], a["status"]) for a in tenant["approvals"]] == [("access_control", "active")]

    city = _operator(
        served, "tenants", "register", "city-serve", "--name", "City", "--sector", "government",
        "--country", "GB", "--jurisdiction", "GB-LND",
    )  # fmt: skip
    assert city.returncode == EXIT_OK, city.stderr
    refused = _operator(
        served, "use-cases", "approve", "city-serve", "--use-case", "access_control",
        "--deployment", "camera_network", "--source-kind", "stream",
    )  # fmt: skip
    assert refused.returncode == EXIT_REFUSED
    assert "never.public_space_identification" in refused.stderr
    assert "Traceback" not in refused.stderr

    usa = _operator(
        served, "tenants", "register", "bad-vocab", "--name", "X", "--sector", "police",
        "--country", "USA", "--jurisdiction", "US",
    )  # fmt: skip
    assert usa.returncode == EXIT_BAD_INPUT
    assert len(usa.stderr.strip().splitlines()) == 1
    assert "Traceback" not in usa.stderr

    taken = _operator(
        served, "tenants", "register", TENANT, "--name", "Again", "--sector", "corrections",
        "--country", "GB", "--jurisdiction", "GB-ENG",
    )  # fmt: skip
    assert taken.returncode == EXIT_BAD_INPUT
    assert "already registered" in taken.stderr


def test_a_person_enrols_a_folder_and_searches_from_another_process(
    served: dict[str, Any], onboarded: dict[str, str], tmp_path: Path
) -> None:
    """SRP sign-in against the served pool, then the tenant CLI (a folder with a consent file) and the
    SDK (search, review, erase, export) over real HTTP; the SDK refreshes its token itself."""
    session = _sign_in(served)
    env = _tenant_env(served, session)
    assert _run(["tenant", "galleries", "create", "staff", "--use-case", "access_control"], env).returncode == 0

    people = _people(3)
    rows = ["subject_id,consent_id"]
    for subject, paths in people.items():
        (tmp_path / "photos" / subject).mkdir(parents=True)
        (tmp_path / "photos" / subject / "a.png").write_bytes(chip_png(paths[0]))
        evidence = tmp_path / f"{subject}.txt"
        evidence.write_text(f"signed release of {subject}")
        consent = _run(
            ["tenant", "consent", subject, "--purpose", "access_control", "--evidence", str(evidence),
             "--expires", "2030-01-01", "--json"],
            env,
        )  # fmt: skip
        assert consent.returncode == 0, consent.stderr
        rows.append(f"{subject},{json.loads(consent.stdout)['consent_id']}")
    (tmp_path / "consents.csv").write_text("\n".join(rows) + "\n")
    enrol = _run(
        ["tenant", "enrol", "staff", str(tmp_path / "photos"), "--consents", str(tmp_path / "consents.csv")], env
    )
    assert enrol.returncode == EXIT_OK, enrol.stderr
    assert "enrolled 3 of 3" in enrol.stdout

    first, paths = next(iter(people.items()))
    probe = tmp_path / "probe.png"
    probe.write_bytes(chip_png(paths[3]))
    cli_search = _run(["tenant", "search", "staff", str(probe), "--purpose", "entry at gate B", "--json"], env)
    assert cli_search.returncode == EXIT_OK, cli_search.stderr
    assert [c["subject_id"] for c in json.loads(cli_search.stdout)["result"]["candidates"]] == [first]

    session.expired(session.token())  # as if the hour had passed: the SDK refreshes before its next call
    client = FacegateClient(served["api_url"], auth=session)
    answer = client.search("staff", probe.read_bytes(), purpose="entry at gate B")
    assert [c["subject_id"] for c in answer["result"]["candidates"]] == [first]
    with pytest.raises(RefusedError) as own:  # the person who searched cannot review it
        client.review(answer["request_id"], confirm=True)
    assert own.value.reason_codes == ["request.self_review"]
    states = [
        FacegateClient(served["api_url"], auth=_sign_in(served, name)).review(answer["request_id"], confirm=True)
        for name in ("reviewer-one", "reviewer-two")
    ]
    assert [s["review_state"] for s in states] == ["pending", "confirmed"]

    # A stale token without a refresh token is the caller's to renew: a 401, said as such.
    stale = FacegateClient(served["api_url"], auth=StaticToken("not-a-token"), max_attempts=1)
    with pytest.raises(Exception, match=r"401|token"):
        stale.list_galleries()

    erased = client.erase_subject(first)
    assert erased["templates_deleted"] >= 1
    export = client.export_audit()
    assert export["verified"] is True
    actions = [e["action"] for e in export["entries"]]
    for expected in ("tenant.registered", "approval.granted", "user.created", "gallery.created", "subject.erased"):
        assert expected in actions, (expected, sorted(set(actions)))

    logged = [line for line in log_lines(served) if line.get("tenant") == TENANT]
    assert {"decision", "outcome"} <= {line.get("event") for line in logged}
    for line in logged:  # never a template, a score or an image in a log line
        assert not {"score", "embedding", "template", "image"} & set(line), line


def test_an_upload_from_another_process_starts_recognize(served: dict[str, Any], onboarded: dict[str, str]) -> None:
    """boto3 in this process, as ``aws s3 cp`` would, with the demo tenant's uploader session: the
    object lands, the bucket's event starts Recognize in the server, the result is the tenant's to read;
    the same session writing under another tenant's prefix is refused by IAM in the server."""
    import boto3

    demo = served["tenant"]
    s3 = boto3.client(
        "s3",
        endpoint_url=served["aws_endpoint"],
        region_name=served["region"],
        aws_access_key_id=demo["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=demo["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=demo["AWS_SESSION_TOKEN"],
    )
    client = FacegateClient(
        served["api_url"],
        auth=CognitoSession(
            client_id=demo["FACEGATE_USER_POOL_CLIENT_ID"],
            refresh_token=demo["FACEGATE_REFRESH_TOKEN"],
            access_token=demo["FACEGATE_TOKEN"],
            endpoint=served["aws_endpoint"],
        ),
    )
    if "gate" not in [g["gallery_id"] for g in client.list_galleries()["galleries"]]:
        client.create_gallery("gate", name="Gate", use_case="access_control")
    subject, paths = next(iter(_people(1).items()))
    consent = client.record_consent(
        subject, purpose="access_control", evidence=b"release", expires_at=datetime(2030, 1, 1, tzinfo=UTC)
    )
    client.wait_for_request(
        client.enrol("gate", subject, consent["consent_id"], chip_png(paths[0]))["request_id"], timeout=120
    )
    before = {r["request_id"] for r in client.get_paginator("list_requests").paginate() for r in r["requests"]}
    s3.put_object(
        Bucket=served["bucket"],
        Key="tenants/demo/probes/gate/camera-1.png",
        Body=chip_png(paths[3]),
        Metadata={"operation": "search", "purpose": "entry at the gate", "actor": "camera-1"},
    )
    deadline = time.monotonic() + 120
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        pages = client.get_paginator("list_requests").paginate()
        found = [
            r for p in pages for r in p["requests"]
            if r["request_id"] not in before and r.get("operation") == "search" and r.get("status") == "completed"
        ]  # fmt: skip
        time.sleep(0.5)
    assert found, "the upload started no Recognize execution the tenant can see"
    assert [c["subject_id"] for c in found[0]["result"]["candidates"]] == [subject]

    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="AccessDenied"):
        s3.put_object(Bucket=served["bucket"], Key=f"tenants/{TENANT}/probes/staff/x.png", Body=b"x")


def test_a_revoked_use_case_is_refused_with_its_reason(served: dict[str, Any], onboarded: dict[str, str]) -> None:
    """The operator revokes the approval from another process; the person's next call is refused with
    the gate's reason codes (the SDK's RefusedError, the CLI's exit 3); the operator reinstates nothing
    silently: both are on the tenant's audit record."""
    session = _sign_in(served)
    env = _tenant_env(served, session)
    client = FacegateClient(served["api_url"], auth=session)
    if "revoked" not in [g["gallery_id"] for g in client.list_galleries()["galleries"]]:
        client.create_gallery("revoked", name="Revoked", use_case="access_control")
    revoke = _operator(
        served, "use-cases", "revoke", TENANT, "--use-case", "access_control", "--reason", "audit finding"
    )
    assert revoke.returncode == EXIT_OK, revoke.stderr
    probe = _people(1)
    path = next(iter(probe.values()))[3]
    answer = client.search("revoked", chip_png(path), purpose="entry at gate B")
    assert answer["status"] == "refused"
    assert [r["code"] for r in answer["result"]["reasons"]] == ["request.approval_revoked"]
    image = served["folder"] / "probe.png"
    image.write_bytes(chip_png(path))
    cli = _run(["tenant", "search", "revoked", str(image), "--purpose", "entry at gate B"], env)
    assert cli.returncode == EXIT_REFUSED
    assert "request.approval_revoked" in cli.stdout
    listed = _operator(served, "use-cases", "list", TENANT, "--json")
    assert [a["status"] for a in json.loads(listed.stdout)] == ["revoked"]
    actions = [e["action"] for e in client.export_audit()["entries"]]
    assert "approval.revoked" in actions
    refusals = [line for line in log_lines(served) if line.get("tenant") == TENANT and line.get("outcome") == "refused"]
    assert refusals
    assert all(line.get("reason_codes") for line in refusals)


def test_a_person_invited_with_a_temporary_password_signs_in_with_the_cli(
    served: dict[str, Any], onboarded: dict[str, str]
) -> None:
    """The operator creates a user without a password (a temporary one is printed, once); the person's
    first ``facegate tenant sign-in`` must set a new one; then the printed variables drive the CLI, and a
    wrong password is a one-line exit 2."""
    created = _operator(served, "users", "create", TENANT, "new-officer", "--json")
    assert created.returncode == EXIT_OK, created.stderr
    temporary = json.loads(created.stdout)["temporary_password"]
    pool = {
        "AWS_ENDPOINT_URL": served["aws_endpoint"],
        "AWS_ENDPOINT_URL_COGNITO_IDP": served["aws_endpoint"],
        "AWS_REGION": served["region"],
        "FACEGATE_USER_POOL_ID": served["tenant"]["FACEGATE_USER_POOL_ID"],
        "FACEGATE_USER_POOL_CLIENT_ID": served["tenant"]["FACEGATE_USER_POOL_CLIENT_ID"],
    }
    assert pool["FACEGATE_USER_POOL_ID"] == _outputs(served)["UserPoolId"]
    args = ["tenant", "sign-in", "new-officer", "--password-stdin", "--json"]
    first = subprocess.run(
        [*FACEGATE, *args], input=f"{temporary}\n", env={**clean_environment(), **pool},
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert first.returncode == EXIT_BAD_INPUT
    assert "new password" in first.stderr
    signed = subprocess.run(
        [*FACEGATE, *args, "--new-password-stdin"], input=f"{temporary}\nNew-officer-pass-1\n",
        env={**clean_environment(), **pool}, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert signed.returncode == EXIT_OK, signed.stderr
    tokens = json.loads(signed.stdout)
    listed = _run(["tenant", "galleries", "list", "--json"], {**pool, **tokens, "FACEGATE_API_URL": served["api_url"]})
    assert listed.returncode == EXIT_OK, listed.stderr
    disabled = _operator(served, "users", "disable", TENANT, "new-officer")
    assert disabled.returncode == EXIT_OK, disabled.stderr
    again = subprocess.run(
        [*FACEGATE, *args], input="New-officer-pass-1\n", env={**clean_environment(), **pool},
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == EXIT_BAD_INPUT
    assert len(again.stderr.strip().splitlines()) == 1


def test_a_checkpoint_system_signs_in_with_client_credentials_from_another_process(
    served: dict[str, Any], onboarded: dict[str, str]
) -> None:
    """The operator CLI creates a machine client (its secret shown once); the tenant CLI and the SDK,
    given only FACEGATE_CLIENT_ID, _SECRET and FACEGATE_TOKEN_URL (the stack's TokenUrl), act as the
    tenant; disabled, the next sign-in is a one-line exit 2; the seeded demo tenant has one in machine.env."""
    created = _operator(served, "clients", "create", TENANT, "gate-b-turnstile", "--json")
    assert created.returncode == EXIT_OK, created.stderr
    client = json.loads(created.stdout)
    assert (client["tenant_id"], client["name"], client["status"]) == (TENANT, "gate-b-turnstile", "active")
    assert client["token_url"] == _outputs(served)["TokenUrl"] == served["token_url"]
    machine = {
        "FACEGATE_API_URL": served["api_url"],
        "FACEGATE_CLIENT_ID": client["client_id"],
        "FACEGATE_CLIENT_SECRET": client["client_secret"],
        "FACEGATE_TOKEN_URL": client["token_url"],
    }
    listed = _run(["tenant", "galleries", "list", "--json"], machine)
    assert listed.returncode == EXIT_OK, listed.stderr
    clients = _operator(served, "clients", "list", TENANT, "--json")
    assert [c["name"] for c in json.loads(clients.stdout)] == ["gate-b-turnstile"]
    assert "client_secret" not in clients.stdout  # shown once, at creation; never stored by facegate

    disabled = _operator(served, "clients", "disable", TENANT, client["client_id"], "--reason", "reader stolen")
    assert disabled.returncode == EXIT_OK, disabled.stderr
    refused = _run(["tenant", "galleries", "list"], machine)
    assert refused.returncode == EXIT_BAD_INPUT
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "disabled" in refused.stderr

    demo = served["machine"]
    assert "export FACEGATE_CLIENT_SECRET=" in (served["folder"] / "machine.env").read_text()
    seeded = FacegateClient(
        demo["FACEGATE_API_URL"],
        auth=ClientCredentials(demo["FACEGATE_CLIENT_ID"], demo["FACEGATE_CLIENT_SECRET"], demo["FACEGATE_TOKEN_URL"]),
    )
    assert isinstance(seeded.list_galleries()["galleries"], list)
    actions = [e["action"] for e in FacegateClient(served["api_url"], auth=_sign_in(served)).export_audit()["entries"]]
    assert {"machine_client.created", "machine_client.disabled"} <= set(actions)


def test_a_large_audit_log_is_exported_to_s3_and_downloaded_from_another_process(
    served: dict[str, Any], onboarded: dict[str, str]
) -> None:
    """The SDK asks for the export, waits for it and downloads it through its presigned URL (moto's
    endpoint here), the bytes checked against the SHA-256 the audit log recorded; the document verifies."""
    from facegate_sdk import verify_export

    client = FacegateClient(served["api_url"], auth=_sign_in(served))
    export_id = client.start_audit_export()["export_id"]
    done = client.wait_for_audit_export(export_id, timeout=120)
    assert done["status"] == "completed", done
    assert done["download_url"].startswith(served["aws_endpoint"])
    document = client.download_audit_export(export_id)
    assert document["verified"] is True
    assert len(document["entries"]) == done["entries"]
    verify_export(document, document["anchor"], base64.b64decode(document["public_key"]))
    assert "audit.exported" in [e["action"] for e in client.export_audit()["entries"]]


def test_a_bulk_enrolment_uploads_straight_to_s3_and_reports_each_subject(served: dict[str, Any]) -> None:
    """The SDK uploads the photos with the API's presigned URLs (from this process to the server's S3),
    submits the manifest, and reads the per-subject report until it is complete: each line enrolled or
    failed with its code; a manifest naming another tenant's key is refused before anything starts."""
    demo = served["tenant"]
    client = FacegateClient(
        served["api_url"],
        auth=CognitoSession(
            client_id=demo["FACEGATE_USER_POOL_CLIENT_ID"],
            refresh_token=demo["FACEGATE_REFRESH_TOKEN"],
            endpoint=served["aws_endpoint"],
        ),
    )
    client.create_gallery("bulk", name="Bulk", use_case="access_control")
    people = _people(3)
    keys = client.upload_photos("bulk", [chip_png(paths[0]) for paths in people.values()])
    assert all(k.startswith("tenants/demo/uploads/bulk/") for k in keys)
    lines = []
    for (subject, _), key in zip(people.items(), keys, strict=True):
        consent = client.record_consent(
            subject, purpose="access_control", evidence=b"release", expires_at=datetime(2030, 1, 1, tzinfo=UTC)
        )
        lines.append({"subject_id": subject, "consent_id": consent["consent_id"], "key": key})
    missing = {**lines[0], "subject_id": "nobody", "key": "tenants/demo/uploads/bulk/never-uploaded"}
    submitted = client.bulk_enrol("bulk", [*lines, missing])
    deadline = time.monotonic() + 180
    report = client.bulk_report(submitted["request_id"])
    while report["state"] != "completed" and time.monotonic() < deadline:
        assert report["state"] in ("queued", "running")
        time.sleep(0.5)
        report = client.bulk_report(submitted["request_id"])
    assert report["state"] == "completed"
    assert (report["lines"], report["done"], report["enrolled"], report["failed"]) == (4, 4, 3, 1)
    (failed,) = [r for r in report["results"] if r["status"] == "failed"]
    assert failed["code"] == "image.missing"
    assert "tenant_id" not in report
    from facegate_sdk import BadRequestError

    with pytest.raises(BadRequestError, match="must lie"):
        client.bulk_enrol("bulk", [{**lines[0], "key": f"tenants/{TENANT}/uploads/bulk/x"}])
