"""deploy/Dockerfile: hadolint finds nothing, and the image is the one the issue asks for."""

from __future__ import annotations

import json
import re

from deploy.tools import DEPLOY, ROOT, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing() -> None:
    res = run(tool("hadolint"), "--failure-threshold", "style", str(DOCKERFILE))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "", res.stdout


def test_two_stages_on_slim_python_311_and_no_compiler_in_the_runtime() -> None:
    ins = instructions()
    (arg,) = [a for i, a in ins if i == "ARG" and a.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", arg), arg
    # the build stage has a compiler (the full image) for the compiled modules, same Python 3.11
    (build_arg,) = [a for i, a in ins if i == "ARG" and a.startswith("BUILD_IMAGE=")]
    assert re.fullmatch(r"BUILD_IMAGE=python:3\.11(-\w+)?", build_arg) and "slim" not in build_arg
    froms = [n for n, (i, _) in enumerate(ins) if i == "FROM"]
    assert len(froms) == 2
    build, runtime = ins[froms[0] : froms[1]], ins[froms[1] :]
    assert build[0][1] == "${BUILD_IMAGE} AS build" and runtime[0][1] == "${PYTHON_IMAGE}"
    (run,) = [a for i, a in build if i == "RUN" and "pip wheel" in a]  # the wheel is built in stage 1
    assert run.index("scripts/native.py") < run.index("pip wheel"), "compiled before the wheel is made"
    assert any(i == "COPY" and a.startswith("--from=build ") for i, a in runtime)
    runtime_text = " ".join(a for _, a in runtime)
    for compiler in ("gcc", "build-essential", "g++", "clang", "apt-get install"):
        assert compiler not in runtime_text, compiler


def test_runs_as_non_root_with_a_healthcheck_and_cxstream_worker() -> None:
    runtime = instructions()
    runtime = runtime[[n for n, (i, _) in enumerate(runtime) if i == "FROM"][-1] :]
    users = [a for i, a in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    (health,) = [a for i, a in runtime if i == "HEALTHCHECK"]
    assert "/healthz" in health and "CXSTREAM_METRICS_PORT" in health and "curl" not in health
    (entry,) = [a for i, a in runtime if i == "ENTRYPOINT"]
    (cmd,) = [a for i, a in runtime if i == "CMD"]
    assert json.loads(entry) == ["cxstream"] and json.loads(cmd) == ["worker"]
    (expose,) = [a for i, a in runtime if i == "EXPOSE"]
    assert expose == "9464"


def test_settings_come_from_the_environment_only() -> None:
    """No config file is copied in, and the working directory holds none (cxstream.toml would be read)."""
    ins = instructions()
    copies = " ".join(a for i, a in ins if i in ("COPY", "ADD"))
    assert ".toml" not in copies.replace("pyproject.toml", "")
    (workdir,) = [
        a for i, a in ins[[n for n, (i, _) in enumerate(ins) if i == "FROM"][-1] :] if i == "WORKDIR"
    ]
    assert workdir == "/srv/cxstream"


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*", "the context is a list of what the image needs, not of what it does not"
    for i, a in instructions():
        if i == "COPY" and not a.startswith("--from="):
            for src in a.split()[:-1]:
                assert (ROOT / src).exists(), src
                assert {f"!{src.rstrip('/')}", f"!{src.rstrip('/')}/"} & set(rules), src
