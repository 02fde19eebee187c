"""Checks of the deployment files that cannot be run on this machine (no Docker, no Kubernetes):
plain functions that return the problems they find, one sentence each, so that tests can show
both that ``deploy/`` passes and that a broken file would not."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import jsonschema
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
HELM_SCHEMA = Path(__file__).with_name("helm_values_schema.json")
#: A base pinned to an exact Python release (optionally by digest too): never `latest`, never `3.11`.
PINNED_BASE = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
#: Settings that come from the environment at run time and must never be baked into the image.
SETTINGS = ("CHEETAH_CONSUMER_KEY", "CHEETAH_CONSUMER_SECRET", "CHEETAH_CLIENT_ID", "CUSTOMER_DB_URL", "DAGSTER_PG_URL")


def dockerfile_problems(text: str, context: Path = ROOT) -> list[str]:
    """What is wrong with a user-code Dockerfile built from ``context``; empty when nothing is."""
    # Parsed from memory: given a path (the default is the working directory), the parser would
    # write the text there.
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    kinds = [k for k, _ in instructions]
    problems = []
    froms = [v for k, v in instructions if k == "FROM"]
    if len(froms) != 1 or not PINNED_BASE.fullmatch(froms[0]):
        problems.append(f"the image must have one base pinned to an exact release, like python:3.11.14-slim-bookworm, not {froms}")
    users = [v for k, v in instructions if k == "USER"]
    if not users or users[-1].split(":")[0] in {"root", "0"}:
        problems.append("the image must end as a non-root user (USER 10001:10001)")
    elif "RUN" in kinds and max(i for i, k in enumerate(kinds) if k == "USER") < max(i for i, k in enumerate(kinds) if k == "RUN"):
        problems.append("a RUN comes after the last USER, so it runs as root")
    if not any(k == "RUN" and re.search(r"pip install [^&]*\s\.(\s|$)", v) for k, v in instructions):
        problems.append("the package is not installed (pip install .)")
    for k, v in instructions:
        if k == "COPY":
            for source in (s for s in v.split()[:-1] if not s.startswith("--")):
                if not (context / source).exists():
                    problems.append(f"COPY {source}: no such path in the build context")
                if "cheetah_assets_tests" in source or ".venv" in source:
                    problems.append(f"COPY {source}: tests and virtualenvs stay out of the image")
    entries = [v for k, v in instructions if k == "ENTRYPOINT"]
    entry = json.loads(entries[-1]) if entries and entries[-1].startswith("[") else None
    if entry is None:
        problems.append("the ENTRYPOINT must be in exec form, so that signals reach the code server")
    elif (entry[:3] != ["dagster", "code-server", "start"] or "--module-name" not in entry
          or entry[entry.index("--module-name") + 1] != "cheetah_assets.definitions"):
        problems.append(f"the ENTRYPOINT must be `dagster code-server start --module-name cheetah_assets.definitions`, not {entry}")
    baked = [name for name in SETTINGS if name in parser.envs or re.search(rf"\b{name}=", text)]
    if baked:
        problems.append(f"settings baked into the image: {', '.join(baked)}; they come from the environment at run time")
    return problems


def helm_values_problems(values: dict) -> list[str]:
    """Where ``values`` departs from the chart's documented keys (``helm_values_schema.json``)."""
    schema = json.loads(HELM_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))
    ]
