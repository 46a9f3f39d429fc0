"""Dockerfile and .dockerignore: static checks (the image itself is exercised by test_container.py)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

from conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for ins, args in instructions():
        if ins == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)\s+AS\s+(\S+)", args, re.I)
            assert m, f"every stage is named: FROM {args}"
            current = m.group(2)
            result[current] = [(ins, m.group(1))]
        elif current:
            result[current].append((ins, args))
    return result


def final_stage() -> list[tuple[str, str]]:
    return list(stages().values())[-1]


def test_multi_stage_with_dependency_layer():
    s = stages()
    assert len(s) >= 3
    builder = s["builder"]
    steps = [a for i, a in builder if i in ("RUN", "COPY")]
    cook = next(i for i, a in enumerate(steps) if "cargo chef cook" in a)
    copy_src = next(i for i, a in enumerate(steps) if a.startswith("src "))
    build = next(i for i, a in enumerate(steps) if a.startswith("cargo build --release"))
    assert cook < copy_src < build, "dependencies are built in a layer before the sources are copied"
    assert "--locked" in steps[cook] and "--locked" in steps[build]


def test_rust_version_satisfies_cargo_toml():
    want = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["rust-version"]
    have = re.search(r"^ARG RUST_VERSION=(\S+)", DOCKERFILE, re.M).group(1)
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))
    assert as_tuple(have) >= as_tuple(want)


def test_minimal_runtime_non_root_with_healthcheck():
    final = final_stage()
    base = final[0][1]
    assert re.match(r"(gcr\.io/distroless/cc|debian:\S*slim|scratch)", base), base
    users = [a for i, a in final if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "runs as non-root"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "numeric user, verifiable by the orchestrator"
    (entry,) = [json.loads(a) for i, a in final if i == "ENTRYPOINT"]
    (hc,) = [a for i, a in final if i == "HEALTHCHECK"]
    cmd = json.loads(hc.split(" CMD ", 1)[1])
    assert cmd == [entry[0], "healthcheck"], "exec form, the binary's own subcommand (no shell, no curl)"
    copies = [a for i, a in final if i == "COPY"]
    assert any(a.split()[-1] == entry[0] for a in copies), "ENTRYPOINT is the copied binary"
    if "distroless" not in base:
        assert any("ca-certificates" in a for i, a in final if i == "RUN"), "CA certificates"


def test_healthcheck_subcommand_exists():
    main = (ROOT / "src" / "main.rs").read_text()
    assert '"healthcheck"' in main


def test_glibc_of_builder_not_newer_than_runtime():
    s = stages()
    builder_base = s["chef"][0][1] if "chef" in s else s["builder"][0][1]
    runtime = final_stage()[0][1]
    # bookworm == debian12: the binary links against the runtime's glibc.
    if "distroless" in runtime:
        assert "bookworm" in builder_base and "debian12" in runtime


def test_dockerignore_keeps_build_outputs_and_caches_out():
    patterns = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p.rstrip("/")) or fnmatch.fnmatch(path, p.rstrip("/") + "/*")
                   or path.split("/")[0] == p.rstrip("/") for p in patterns)

    for path in ("target/debug/f4a-indexer", "target-release/release/f4a-indexer", ".cache/x", ".git/HEAD"):
        assert ignored(path), path
    # What the Dockerfile copies must stay in the context.
    copied = {a.split()[0] for i, a in instructions() if i == "COPY" and not a.startswith("--from")}
    for src in copied:
        assert not ignored(src), f"{src} is copied but ignored"
        assert (ROOT / src).exists(), src
