"""``facegate tenant ...``: a tenant's commands against a deployed (or local) API, through the SDK.

Each command takes ``--endpoint`` and ``--token`` (or ``FACEGATE_API_URL`` and ``FACEGATE_TOKEN``, or a
machine client's ``FACEGATE_CLIENT_ID``, ``FACEGATE_CLIENT_SECRET`` and ``FACEGATE_TOKEN_URL``) and
``--json`` (the API's answer as one JSON document on stdout, for scripts); without it, one line a
person reads. The exit codes are the CLI's (:mod:`facegate.cli`): 0 done or a match, 1 no match, 2 bad
input, 3 refused (the reason codes are printed), 4 an error or no outcome yet.

    facegate tenant galleries create staff --name Staff --use-case access_control
    facegate tenant consent s-42 --purpose access_control --evidence release.pdf --expires 2027-06-01
    facegate tenant enrol staff photos/ --consents consents.csv     # photos/<subject_id>/*.jpg
    facegate tenant verify staff s-42 probe.jpg --purpose "entry at gate B"
    facegate tenant search staff probe.jpg --purpose "entry at gate B" --top-k 3
    facegate tenant results REQUEST_ID [--wait]
    facegate tenant review REQUEST_ID --confirm | --reject
    facegate tenant erase s-42
    facegate tenant audit export --out audit.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facegate.errors import InvalidRequestError

EXIT_OK = 0
EXIT_NO_MATCH = 1
EXIT_REFUSED = 3
EXIT_ERROR = 4
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_PHOTOS = 5


def _client(args: argparse.Namespace) -> Any:
    from facegate_sdk import FacegateClient
    from facegate_sdk.auth import StaticToken, from_environment

    if not args.endpoint:
        raise InvalidRequestError("name the API: --endpoint or FACEGATE_API_URL (the stack's ApiUrl)")
    # The environment's session (a person's refresh token, a machine's client credentials) renews itself;
    # a token given on the line is used as is.
    given = args.token and args.token != os.environ.get("FACEGATE_TOKEN")
    auth = StaticToken(args.token) if given else from_environment()
    if auth is None:
        raise InvalidRequestError(
            "name your token: --token or FACEGATE_TOKEN (facegate tenant sign-in), or a machine client's "
            "FACEGATE_CLIENT_ID, FACEGATE_CLIENT_SECRET and FACEGATE_TOKEN_URL"
        )
    return FacegateClient(args.endpoint, auth=auth, timeout=120.0)


def _sign_in(args: argparse.Namespace) -> int:
    """A person's SRP sign-in; prints the variables the other commands and the SDK read."""
    import getpass

    from facegate_sdk.auth import CognitoSession

    if not args.user_pool_id or not args.client_id:
        raise InvalidRequestError(
            "name the user pool: --user-pool-id/--client-id or FACEGATE_USER_POOL_ID/FACEGATE_USER_POOL_CLIENT_ID "
            "(the stack's outputs UserPoolId and UserPoolClientId)"
        )
    password = (
        sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(f"password for {args.username}: ")
    )
    new_password = None
    if args.new_password_stdin:
        new_password = sys.stdin.readline().rstrip("\n")
    session = CognitoSession.sign_in(
        args.username,
        password,
        user_pool_id=args.user_pool_id,
        client_id=args.client_id,
        new_password=new_password,
    )
    env = {
        "FACEGATE_TOKEN": session.token(),
        "FACEGATE_REFRESH_TOKEN": session.refresh_token,
        "FACEGATE_USER_POOL_CLIENT_ID": args.client_id,
    }
    if args.json:
        print(json.dumps(env, indent=1))
    else:
        print("".join(f"export {k}='{v}'\n" for k, v in env.items()), end="")
    return EXIT_OK


def _emit(args: argparse.Namespace, answer: Any, line: str) -> None:
    print(json.dumps(answer, indent=1, default=str) if args.json else line)


def _reasons(answer: dict[str, Any]) -> list[str]:
    reasons = (answer.get("result") or {}).get("reasons") or (answer.get("decision") or {}).get("reasons") or []
    return [str(r.get("code")) for r in reasons if isinstance(r, dict)]


def _outcome_code(answer: dict[str, Any]) -> int:
    """A recognition's exit code: refused 3, failed 4, otherwise match 0 or no match 1."""
    status = answer.get("status")
    if status == "refused":
        return EXIT_REFUSED
    if status != "completed":
        return EXIT_ERROR
    result = answer.get("result") or {}
    if answer.get("operation") == "verify" or "matched" in result:
        return EXIT_OK if result.get("matched") else EXIT_NO_MATCH
    return EXIT_OK if result.get("candidates") else EXIT_NO_MATCH


def _describe(answer: dict[str, Any]) -> str:
    status = answer.get("status")
    rid = answer.get("request_id")
    if status in ("refused", "failed"):
        return f"{status}: {', '.join(_reasons(answer)) or 'no reason given'} (request {rid})"
    if status != "completed":
        return f"{status or 'unknown'}: no outcome yet (request {rid})"
    result = answer.get("result") or {}
    if answer.get("operation") == "verify" or "matched" in result:
        return f"{'match' if result.get('matched') else 'no match'} (request {rid})"
    if answer.get("operation") == "search":
        candidates = result.get("candidates") or []
        names = ", ".join(str(c.get("subject_id")) for c in candidates)
        review = answer.get("review_state")
        pending = "; a person must review it" if review == "pending" else ""
        return f"{len(candidates)} candidate(s){': ' + names if names else ''} (request {rid}{pending})"
    return f"completed (request {rid})"


def _read(path: Path) -> bytes:
    return path.read_bytes()  # a missing or unreadable file is the CLI's one-line exit 2


def _galleries_create(args: argparse.Namespace) -> int:
    answer = _client(args).create_gallery(args.gallery_id, name=args.name or args.gallery_id, use_case=args.use_case)
    _emit(args, answer, f"gallery {answer['gallery_id']} ({answer['use_case']}, up to {answer['max_size']} people)")
    return EXIT_OK


def _galleries_list(args: argparse.Namespace) -> int:
    answer = _client(args).list_galleries()
    rows = [
        f"{g['gallery_id']:<32} {g['use_case']:<20} {g['size']:>7} of {g['max_size']:<8} {g.get('model_version', '')}"
        for g in answer["galleries"]
    ]
    _emit(args, answer, "\n".join(rows) or "no gallery yet")
    return EXIT_OK


def _galleries_show(args: argparse.Namespace) -> int:
    answer = _client(args).describe_gallery(args.gallery_id)
    _emit(args, answer, json.dumps(answer, indent=1, default=str))
    return EXIT_OK


def _galleries_delete(args: argparse.Namespace) -> int:
    if not args.yes:
        raise InvalidRequestError(f"deleting {args.gallery_id} deletes every template in it: add --yes")
    answer = _client(args).delete_gallery(args.gallery_id)
    _emit(args, answer, f"gallery {args.gallery_id} deleted ({answer['templates_deleted']} templates)")
    return EXIT_OK


def _consent(args: argparse.Namespace) -> int:
    try:
        expires = datetime.fromisoformat(args.expires)
    except ValueError:
        raise InvalidRequestError(
            f"--expires is a date or time in ISO 8601 (2027-06-01), not {args.expires!r}"
        ) from None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    answer = _client(args).record_consent(
        args.subject_id, purpose=args.purpose, evidence=_read(args.evidence), expires_at=expires
    )
    if args.csv is not None:  # the consent file `tenant enrol --consents` reads, one row per consent
        new = not args.csv.exists() or args.csv.stat().st_size == 0
        with args.csv.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["subject_id", "consent_id"])
            writer.writerow([args.subject_id, answer["consent_id"]])
    _emit(args, answer, f"consent {answer['consent_id']} for {args.subject_id}")
    return EXIT_OK


def _subjects(folder: Path, consents: Path) -> list[tuple[str, str, list[Path]]]:
    """(subject, consent, photos) for each subject folder; checked before anything is sent."""
    if not folder.is_dir():
        raise InvalidRequestError(f"{folder} is not a folder (one subfolder of photos per subject)")
    with consents.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"subject_id", "consent_id"} <= set(rows[0]):
        raise InvalidRequestError(f"{consents} needs the columns subject_id and consent_id")
    consent_of = {r["subject_id"].strip(): r["consent_id"].strip() for r in rows}
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos = sorted(p for p in sub.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not photos:
            continue
        if len(photos) > MAX_PHOTOS:
            raise InvalidRequestError(f"{sub}: {len(photos)} photos; an enrolment takes 1 to {MAX_PHOTOS}")
        if sub.name not in consent_of:
            raise InvalidRequestError(f"{sub.name} has photos but no consent in {consents}")
        found.append((sub.name, consent_of[sub.name], photos))
    if not found:
        raise InvalidRequestError(f"{folder} has no subject folder with photos ({', '.join(PHOTO_SUFFIXES)})")
    return found


def _progress(done: int, total: int, label: str) -> None:
    if not sys.stderr.isatty() and not os.environ.get("FACEGATE_PROGRESS"):
        return
    width = 30
    filled = width * done // total
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:40]:<40}", end="", file=sys.stderr)
    if done == total:
        print(file=sys.stderr)


def _enrol(args: argparse.Namespace) -> int:
    subjects = _subjects(args.folder, args.consents)
    client = _client(args)
    outcomes = []
    for i, (subject, consent, photos) in enumerate(subjects):
        _progress(i, len(subjects), subject)
        images = [_read(p) for p in photos]
        submitted = client.enrol(args.gallery_id, subject, consent, images=images)
        outcome = client.wait_for_request(submitted["request_id"], timeout=args.timeout)
        outcomes.append({"subject_id": subject, "photos": len(photos), **outcome})
        if not args.json:
            print(f"{subject}: {outcome['status']} {', '.join(_reasons(outcome))}".rstrip())
    _progress(len(subjects), len(subjects), "done")
    enrolled = sum(o["status"] == "completed" for o in outcomes)
    summary = {"enrolled": enrolled, "not_enrolled": len(outcomes) - enrolled, "subjects": outcomes}
    _emit(args, summary, f"enrolled {enrolled} of {len(outcomes)}")
    if enrolled == len(outcomes):
        return EXIT_OK
    return EXIT_REFUSED if all(o["status"] in ("completed", "refused") for o in outcomes) else EXIT_ERROR


def _verify(args: argparse.Namespace) -> int:
    answer = _client(args).verify(
        args.gallery_id, args.subject_id, _read(args.image), purpose=args.purpose, case_reference=args.case
    )
    _emit(args, answer, _describe(answer))
    return _outcome_code(answer)


def _search(args: argparse.Namespace) -> int:
    answer = _client(args).search(
        args.gallery_id, _read(args.image), purpose=args.purpose, case_reference=args.case, top_k=args.top_k
    )
    _emit(args, answer, _describe(answer))
    return _outcome_code(answer)


def _results(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.wait:
        answer = client.wait_for_request(args.request_id, timeout=args.timeout)
    else:
        answer = client.get_request(args.request_id)
    _emit(args, answer, _describe(answer))
    if answer.get("operation") in ("verify", "search"):
        return _outcome_code(answer)
    return {"completed": EXIT_OK, "refused": EXIT_REFUSED}.get(str(answer.get("status")), EXIT_ERROR)


def _review(args: argparse.Namespace) -> int:
    answer = _client(args).review(args.request_id, confirm=args.confirm)
    _emit(args, answer, f"review {answer['review_state']} ({len(answer['reviewers'])} reviewer(s))")
    return EXIT_OK


def _erase(args: argparse.Namespace) -> int:
    answer = _client(args).erase_subject(args.subject_id)
    remaining = ", ".join(str(r.get("where")) for r in answer.get("remaining", []))
    line = f"erased {args.subject_id}: {answer.get('templates_deleted', 0)} template(s) deleted"
    _emit(args, answer, line + (f"; kept by rule: {remaining}" if remaining else ""))
    return EXIT_OK


def _audit_export(args: argparse.Namespace) -> int:
    export = _client(args).export_audit(anchor=args.anchor.read_text().strip() if args.anchor else None)
    if args.out is not None:
        args.out.write_text(json.dumps(export, indent=1) + "\n", encoding="utf-8")
    verified = export.get("verified")
    line = f"{len(export.get('entries', []))} entries, verified: {verified}" + (f", in {args.out}" if args.out else "")
    if args.json and args.out is None:
        print(json.dumps(export, indent=1))
    else:
        print(line)
    return EXIT_OK if verified else EXIT_ERROR


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default=os.environ.get("FACEGATE_API_URL"), help="the API (FACEGATE_API_URL)")
    parser.add_argument(
        "--token",
        default=os.environ.get("FACEGATE_TOKEN"),
        help="your access token (FACEGATE_TOKEN; else a machine's FACEGATE_CLIENT_ID/_SECRET/FACEGATE_TOKEN_URL)",
    )
    parser.add_argument("--json", action="store_true", help="the API's answer as JSON on stdout")


def register(sub: Any) -> None:
    """Add ``tenant`` and its commands to the CLI's subparsers."""
    tenant = sub.add_parser("tenant", help="a tenant's commands against the API (galleries, enrol, verify, ...)")
    commands = tenant.add_subparsers(dest="action", required=True)

    sign_in = commands.add_parser(
        "sign-in", help='sign in with your password (SRP) and print the variables to export (eval "$(...)")'
    )
    sign_in.add_argument("username", help="your user name (an operator created it)")
    sign_in.add_argument(
        "--user-pool-id", default=os.environ.get("FACEGATE_USER_POOL_ID"), help="UserPoolId (FACEGATE_USER_POOL_ID)"
    )
    sign_in.add_argument(
        "--client-id",
        default=os.environ.get("FACEGATE_USER_POOL_CLIENT_ID"),
        help="UserPoolClientId (FACEGATE_USER_POOL_CLIENT_ID)",
    )
    sign_in.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    sign_in.add_argument(
        "--new-password-stdin", action="store_true", help="a first sign-in: the new password on stdin's next line"
    )
    sign_in.add_argument("--json", action="store_true", help="the variables as JSON")
    sign_in.set_defaults(func=_sign_in)

    galleries = commands.add_parser("galleries", help="your galleries").add_subparsers(dest="gallery_action")
    galleries.required = True
    create = galleries.add_parser("create", help="create a gallery for one of your approved use cases")
    create.add_argument("gallery_id", help="1-128 letters, digits, '_', '.' or '-'")
    create.add_argument("--name", help="a display name (default: the id)")
    create.add_argument("--use-case", required=True, help="an approved use case, e.g. access_control")
    _connection(create)
    create.set_defaults(func=_galleries_create)

    listing = galleries.add_parser("list", help="your galleries: use case, size, cap, model version")
    _connection(listing)
    listing.set_defaults(func=_galleries_list)
    show = galleries.add_parser("show", help="one gallery (size, cap, use case, version, model version)")
    show.add_argument("gallery_id", help="the gallery")
    _connection(show)
    show.set_defaults(func=_galleries_show)

    delete = galleries.add_parser("delete", help="delete a gallery and every template in it (audited)")
    delete.add_argument("gallery_id", help="the gallery")
    delete.add_argument("--yes", action="store_true", help="yes, every template in it goes")
    _connection(delete)
    delete.set_defaults(func=_galleries_delete)

    consent = commands.add_parser("consent", help="record a subject's consent (only the evidence's sha256 is kept)")
    consent.add_argument("subject_id", help="the subject's id in your system")
    consent.add_argument("--purpose", required=True, help="the use case consented to, e.g. access_control")
    consent.add_argument("--evidence", type=Path, required=True, help="the signed release (a file)")
    consent.add_argument("--expires", required=True, help="when the consent ends (ISO 8601, e.g. 2027-06-01)")
    consent.add_argument(
        "--csv", type=Path, help="append subject_id,consent_id to this file (what `enrol --consents` reads)"
    )
    _connection(consent)
    consent.set_defaults(func=_consent)

    enrol = commands.add_parser("enrol", help="enrol a folder: one subfolder of 1-5 photos per subject")
    enrol.add_argument("gallery_id", help="the gallery to enrol into")
    enrol.add_argument("folder", type=Path, help="FOLDER/<subject_id>/*.jpg (png, webp)")
    enrol.add_argument("--consents", type=Path, required=True, help="a CSV with subject_id and consent_id")
    enrol.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each (default 300)")
    _connection(enrol)
    enrol.set_defaults(func=_enrol)

    verify = commands.add_parser("verify", help="1:1: is this the enrolled subject? (exit 0 match, 1 no match)")
    verify.add_argument("gallery_id", help="the subject's gallery")
    verify.add_argument("subject_id", help="who the person claims to be")
    verify.add_argument("image", type=Path, help="the probe photo")
    verify.add_argument("--purpose", help="why (the use case may require it)")
    verify.add_argument("--case", help="a case reference (the use case may require it)")
    _connection(verify)
    verify.set_defaults(func=_verify)

    search = commands.add_parser("search", help="1:N in one of your galleries (exit 0 candidates, 1 none)")
    search.add_argument("gallery_id", help="the gallery to search")
    search.add_argument("image", type=Path, help="the probe photo")
    search.add_argument("--purpose", help="why (the use case may require it)")
    search.add_argument("--case", help="a case reference (the use case may require it)")
    search.add_argument("--top-k", type=int, default=1, help="how many candidates at most (default 1)")
    _connection(search)
    search.set_defaults(func=_search)

    results = commands.add_parser("results", help="a request's status or outcome")
    results.add_argument("request_id", help="the id a submission returned")
    results.add_argument("--wait", action="store_true", help="wait for the outcome (with backoff)")
    results.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    _connection(results)
    results.set_defaults(func=_results)

    review = commands.add_parser("review", help="confirm or reject a result that needs a person's review")
    review.add_argument("request_id", help="the request to review (not one you made)")
    choice = review.add_mutually_exclusive_group(required=True)
    choice.add_argument("--confirm", dest="confirm", action="store_true", help="the candidate is the person")
    choice.add_argument("--reject", dest="confirm", action="store_false", help="the candidate is not the person")
    _connection(review)
    review.set_defaults(func=_review)

    erase = commands.add_parser("erase", help="erase a subject: templates, consents, mentions in results")
    erase.add_argument("subject_id", help="the subject to erase")
    _connection(erase)
    erase.set_defaults(func=_erase)

    audit = commands.add_parser("audit", help="your audit log").add_subparsers(dest="audit_action")
    audit.required = True
    export = audit.add_parser("export", help="export and verify your audit log (exit 4 if it does not verify)")
    export.add_argument("--out", type=Path, help="write the export here (JSON)")
    export.add_argument("--anchor", type=Path, help="a file holding an anchor token you kept from before")
    _connection(export)
    export.set_defaults(func=_audit_export)
