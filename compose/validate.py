#!/usr/bin/env python3
"""Static checks of the compose files in this folder (no Docker engine needed).

For every compose/*.yaml that has a `services` map:
  - it parses as YAML (PyYAML; `x-*` extension fields and `<<` merges allowed);
  - every service has `image` or `build`; a build context and Dockerfile exist;
  - `depends_on` targets are services of the same file, each with
    `condition: service_healthy`, and every service has a healthcheck;
  - named volumes are declared; bind-mount sources under compose/ exist;
  - every environment variable given to an nvr service is one nvr reads: the
    ENV_VARS table of src/config/load.rs plus the variables read directly with
    std::env in src/ and actors/src/;
  - the command of an nvr service starts with a subcommand of src/cli.rs, and
    each --flag is a global flag or a flag of that subcommand;
  - SPATIAL_CAMERAS of a spatial node are cameras of its --floor-plans files;
  - a NATS service used by nvr has JetStream enabled.
It also checks that compose/Dockerfile is Debian bookworm based, runs
scripts/setup and cargo build --release, has `nvr` as entrypoint, and has a
`gpu` target carrying the GPU build of ONNX Runtime (the CPU image stays the
default target).

Prints one line per file and exits non-zero on any problem.
    data/pyenv/bin/python compose/validate.py
"""

import re
import sys
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("PyYAML is missing: data/pyenv/bin/pip install pyyaml")

COMPOSE = Path(__file__).resolve().parent
ROOT = COMPOSE.parent
CONFIG_RS = ROOT / "src" / "config" / "load.rs"
CLI_RS = ROOT / "src" / "cli.rs"


# ---------------------------------------------------------------- what nvr knows

def known_env_vars():
    """{name: where it is read}."""
    known = {}
    text = CONFIG_RS.read_text()
    table = re.search(r"pub const ENV_VARS: &\[\(&str, &str\)\] = &\[(.*?)\];", text, re.S)
    if not table:
        raise SystemExit(f"cannot find the ENV_VARS table in {CONFIG_RS}")
    for name, key in re.findall(r'\(\s*"([A-Z0-9_]+)"\s*,\s*"([a-z0-9_.]+)"\s*\)', table.group(1)):
        known[name] = f"config key {key}"
    for d in (ROOT / "src", ROOT / "actors" / "src"):
        for f in sorted(d.rglob("*.rs")):
            src = f.read_text()
            for name in re.findall(r'env::var(?:_os)?\(\s*"([A-Z0-9_]+)"\s*\)', src):
                known.setdefault(name, f"read in {f.relative_to(ROOT)}")
            # config::load reads NVR_CONFIG through its env lookup function
            for name in re.findall(r'\benv\(\s*"([A-Z0-9_]+)"\s*\)', src):
                known.setdefault(name, f"read in {f.relative_to(ROOT)}")
    # Read by nvr but not settings of nvr.
    for name in ("PATH", "HOME"):
        known.pop(name, None)
    return known


def kebab(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def struct_flags(struct, sources):
    """Long flags of a clap Args struct: its `#[arg(long...)]` fields."""
    for text in sources:
        m = re.search(r"pub struct %s\s*\{(.*?)\n\}" % re.escape(struct), text, re.S)
        if not m:
            continue
        flags = set()
        pending_long = False
        for line in m.group(1).splitlines():
            line = line.strip()
            if line.startswith("#[arg(") or line.startswith("#[clap("):
                pending_long = "long" in line
                explicit = re.search(r'long\s*=\s*"([^"]+)"', line)
                if explicit:
                    flags.add(explicit.group(1))
                    pending_long = False
            fm = re.match(r"pub (\w+)\s*:", line)
            if fm:
                if pending_long:
                    flags.add(fm.group(1).replace("_", "-"))
                pending_long = False
        return flags
    return None


def cli_model():
    """(global flags, {subcommand: flags or None if it takes other args})."""
    cli = CLI_RS.read_text()
    sources = [cli] + [f.read_text() for f in sorted((ROOT / "src").glob("*.rs")) if f != CLI_RS]
    global_flags = struct_flags("Cli", [cli]) or set()
    enum = re.search(r"pub enum Command\s*\{(.*?)\n\}", cli, re.S)
    if not enum:
        raise SystemExit(f"cannot find enum Command in {CLI_RS}")
    subs = {}
    for variant, args in re.findall(r"^\s{4}(\w+)(?:\(([\w:]+)\)|\s*\{)", enum.group(1), re.M):
        name = kebab(variant)
        if args:
            subs[name] = struct_flags(args.split("::")[-1], sources)
        else:
            subs[name] = None  # struct-like variant with nested subcommands
    return global_flags, subs


# ---------------------------------------------------------------- checks

def as_list(v):
    if v is None:
        return []
    if isinstance(v, str):
        return v.split()
    return [str(x) for x in v]


def env_map(service):
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): ("" if v is None else str(v)) for k, v in env.items()}
    out = {}
    for item in env:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def is_nvr(service):
    image = str(service.get("image", ""))
    build = service.get("build")
    dockerfile = build.get("dockerfile", "") if isinstance(build, dict) else ""
    return image.split(":")[0].endswith("nvr") or dockerfile.endswith("compose/Dockerfile")


def is_nats(service):
    return str(service.get("image", "")).split(":")[0].split("/")[-1] == "nats"


def mounts(service):
    """[(source, target)] of the short volume syntax."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), str(v.get("target", ""))))
        else:
            parts = str(v).split(":")
            if len(parts) >= 2:
                out.append((parts[0], parts[1]))
    return out


def floor_plan_cameras(host_dir):
    cams = set()
    for f in sorted(host_dir.glob("*.y*ml")):
        doc = yaml.safe_load(f.read_text()) or {}
        for c in doc.get("cameras") or []:
            cams.add(str(c.get("id")))
    return cams


def check_file(path, known_env, global_flags, subs):
    problems = []
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        return None, ["no services map"]
    services = doc["services"]
    declared_volumes = set((doc.get("volumes") or {}).keys())
    summary = []
    for name, svc in services.items():
        where = f"service {name}"
        if not isinstance(svc, dict):
            problems.append(f"{where}: not a map")
            continue
        if "image" not in svc and "build" not in svc:
            problems.append(f"{where}: has neither image nor build")
        build = svc.get("build")
        if build is not None:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            ctx_dir = (path.parent / ctx).resolve()
            if not ctx_dir.is_dir():
                problems.append(f"{where}: build context {ctx} does not exist")
            if isinstance(build, dict) and "dockerfile" in build:
                if not (ctx_dir / build["dockerfile"]).is_file():
                    problems.append(f"{where}: Dockerfile {build['dockerfile']} not found in {ctx}")
        deps = svc.get("depends_on") or []
        for dep in (deps.keys() if isinstance(deps, dict) else deps):
            if dep not in services:
                problems.append(f"{where}: depends_on {dep!r}, which is not a service of this file")
            elif dep == name:
                problems.append(f"{where}: depends on itself")
        for src, _ in mounts(svc):
            if src.startswith((".", "/")):
                if src.startswith(".") and not (path.parent / src).exists():
                    problems.append(f"{where}: bind-mount source {src} does not exist")
            elif src and src not in declared_volumes:
                problems.append(f"{where}: named volume {src!r} is not declared under volumes")
        devices = (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices")
        for d in devices or []:
            if "capabilities" not in d:
                problems.append(f"{where}: a device reservation without capabilities")

        hc = svc.get("healthcheck") or {}
        if not hc.get("test"):
            problems.append(f"{where}: no healthcheck")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{where}: depends_on without a health condition (use `<service>: {{condition: service_healthy}}`)")
        else:
            for dep, cond in deps.items():
                if (cond or {}).get("condition") != "service_healthy":
                    problems.append(f"{where}: depends_on {dep} without condition service_healthy")

        if is_nats(svc):
            args = as_list(svc.get("command"))
            if not ({"-js", "--jetstream"} & set(args)):
                problems.append(f"{where}: NATS without JetStream (-js / --jetstream)")
            continue
        if not is_nvr(svc):
            continue

        env = env_map(svc)
        for var in env:
            if var not in known_env:
                problems.append(f"{where}: environment variable {var} is not one nvr reads")
        args = as_list(svc.get("command"))
        if not args:
            args = ["run"]  # the Dockerfile's CMD
        sub = None
        flag_errors = []
        for a in args:
            if a.startswith("--"):
                flag = a[2:].split("=", 1)[0]
                allowed = set(global_flags) | (subs.get(sub) or set())
                if flag not in allowed:
                    flag_errors.append(f"--{flag}")
            elif sub is None:
                sub = a
                if sub not in subs:
                    problems.append(f"{where}: `nvr {sub}` is not a subcommand of src/cli.rs ({', '.join(sorted(subs))})")
        if flag_errors:
            problems.append(f"{where}: `nvr {sub}` has no flag(s) {', '.join(flag_errors)}")

        if sub == "spatial" and "SPATIAL_CAMERAS" in env:
            plans = None
            for i, a in enumerate(args):
                if a.startswith("--floor-plans"):
                    plans = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else None)
            host = None
            for src, target in mounts(svc):
                if plans and target.rstrip("/") == plans.rstrip("/") and src.startswith("."):
                    host = (path.parent / src).resolve()
            if plans and host is not None:
                have = floor_plan_cameras(host)
                wanted = [c.strip() for c in env["SPATIAL_CAMERAS"].split(",") if c.strip()]
                missing = [c for c in wanted if c not in have]
                if missing:
                    problems.append(f"{where}: SPATIAL_CAMERAS {missing} are not in the floor plans of {host.relative_to(ROOT)}")
            elif plans:
                problems.append(f"{where}: --floor-plans {plans} is not a bind mount of this folder")
        summary.append(f"{name}=nvr {sub}")
    return summary, problems


def check_dockerfile(path):
    text = path.read_text()
    problems = []
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    names = set()
    for image, name in stages:
        if "bookworm" not in image and image not in names:
            problems.append(f"every stage should be Debian bookworm based or an earlier stage (FROM {image})")
        if name:
            names.add(name)
    if not stages:
        problems.append("no FROM")
    if "gpu" not in names:
        problems.append("no `gpu` target (the image with the GPU build of ONNX Runtime)")
    elif "ORT_DYLIB_PATH=" not in text or "onnxruntime-gpu==" not in text:
        problems.append("the `gpu` target does not carry the GPU build of ONNX Runtime (ORT_DYLIB_PATH)")
    if stages and stages[-1][1] == "gpu":
        problems.append("the default (last) target should be the CPU image, not `gpu`")
    if not re.search(r"scripts/setup", text):
        problems.append("does not run scripts/setup")
    if not re.search(r"cargo build --release", text):
        problems.append("does not run cargo build --release")
    if not re.search(r'^ENTRYPOINT \["nvr"\]', text, re.M):
        problems.append('ENTRYPOINT is not ["nvr"]')
    return problems


def main():
    known_env = known_env_vars()
    global_flags, subs = cli_model()
    failures = 0
    files = sorted(COMPOSE.glob("*.yaml")) + sorted(COMPOSE.glob("*.yml"))
    compose_files = 0
    for f in files:
        try:
            summary, problems = check_file(f, known_env, global_flags, subs)
        except yaml.YAMLError as e:
            summary, problems = None, [f"YAML error: {e}"]
        if summary is None and problems == ["no services map"]:
            continue
        compose_files += 1
        if problems:
            failures += 1
            print(f"FAIL {f.name}")
            for p in problems:
                print(f"     {p}")
        else:
            print(f"ok   {f.name}: {', '.join(summary)}")
    dockerfile = COMPOSE / "Dockerfile"
    problems = check_dockerfile(dockerfile) if dockerfile.is_file() else ["missing"]
    if problems:
        failures += 1
        print("FAIL Dockerfile: " + "; ".join(problems))
    else:
        print("ok   Dockerfile: bookworm, scripts/setup, cargo build --release, ENTRYPOINT nvr, a gpu target")
    if compose_files == 0:
        failures += 1
        print("FAIL no compose files found")
    print(f"(checked against {len(known_env)} environment variables and "
          f"{len(subs)} subcommands: {', '.join(sorted(subs))})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
