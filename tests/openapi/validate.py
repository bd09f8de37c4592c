"""Checks an OpenAPI document with openapi-spec-validator, then checks recorded
real responses against the schemas it gives for their route, method, status
and content type.

Usage: validate.py SPEC.json RESPONSES.json
RESPONSES.json is a list of {method, path, status, content_type, body}, where
path is the route's template as the document names it and body is the text
received. Prints one line per problem and exits 1 if there is any.
"""

import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate


def media(content_type):
    return content_type.split(";")[0].strip().lower()


def main():
    spec = json.load(open(sys.argv[1]))
    responses = json.load(open(sys.argv[2]))
    validate(spec)
    assert spec["openapi"].startswith("3.1"), spec["openapi"]
    problems = []
    for r in responses:
        where = f'{r["method"]} {r["path"]} -> {r["status"]}'
        operation = spec["paths"].get(r["path"], {}).get(r["method"].lower())
        if operation is None:
            problems.append(f"{where}: no such operation in the document")
            continue
        described = operation["responses"].get(str(r["status"])) or operation[
            "responses"
        ].get("default")
        if described is None:
            problems.append(f"{where}: status not described")
            continue
        content = described.get("content")
        if not content:
            if r["body"]:
                problems.append(f"{where}: a body was sent where none is described")
            continue
        matches = [c for c in content if media(c) == media(r["content_type"])]
        if not matches:
            problems.append(
                f'{where}: content type {r["content_type"]!r} not among {list(content)}'
            )
            continue
        schema = content[matches[0]].get("schema", {})
        if media(r["content_type"]) == "application/json":
            try:
                instance = json.loads(r["body"])
            except ValueError as e:
                problems.append(f"{where}: not JSON: {e}")
                continue
        else:
            instance = r["body"]
        # The schema's references point into the document: validate against
        # a copy of it whose root is the schema.
        root = dict(schema)
        root["components"] = spec.get("components", {})
        errors = list(Draft202012Validator(root).iter_errors(instance))
        for e in errors:
            path = "/".join(str(p) for p in e.absolute_path)
            problems.append(f"{where}: at /{path}: {e.message}")
    for p in problems:
        print(p)
    print(f"{len(responses)} responses checked against the document")
    sys.exit(1 if problems else 0)


main()
