#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine (usable in CI).
#
#   scripts/check-compose.sh [--print-env] [COMPOSE_FILE]
#
# 1. Syntax and schema: `docker compose config -q` when the Compose plugin is
#    installed (it needs no daemon). Without it, the file is parsed with Python
#    and PyYAML (installed on demand: apt-get python3-yaml as root, else pip --user).
# 2. Deployment invariants, checked on the interpolated configuration: services
#    `mcu` and `turn`; the mcu publishes 8080/tcp and MCU_UDP_PORT/udp under the
#    same number; the `recordings` named volume is mounted at MCU_RECORDINGS_DIR;
#    coturn gets deploy/turnserver.conf read-only, the same secret as the mcu and
#    the mcu's fixed address as an allowed peer; its published relay range equals
#    min-port..max-port of deploy/turnserver.conf.
#
# With --print-env, the names of the mcu service's MCU_* environment variables are
# printed to stdout after validation, sorted, one per line (nothing else goes to
# stdout). Exit status 0 when valid, 1 when not (reasons on stderr), 2 on misuse.
#
# A required variable without a value (MCU_TURN_SECRET, in the shell or in .env
# next to the compose file) gets a placeholder, so the file can be checked without
# a .env.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PRINT_ENV=0
FILE=""
for arg in "$@"; do
  case "$arg" in
    --print-env) PRINT_ENV=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "check-compose: unknown option '$arg'" >&2; exit 2 ;;
    *)
      if [ -n "$FILE" ]; then echo "check-compose: more than one compose file given" >&2; exit 2; fi
      FILE="$arg" ;;
  esac
done
FILE="${FILE:-$ROOT/docker-compose.yml}"
if [ ! -f "$FILE" ]; then
  echo "check-compose: $FILE: no such file" >&2
  exit 1
fi
FILE="$(cd "$(dirname "$FILE")" && pwd)/$(basename "$FILE")"
PROJECT_DIR="$(dirname "$FILE")"

# Placeholder for the one required variable, unless the shell or the project's .env
# gives it a value (Compose reads .env itself; the shell environment wins over it).
if [ -z "${MCU_TURN_SECRET:-}" ] && ! grep -Eqs '^[[:space:]]*(export[[:space:]]+)?MCU_TURN_SECRET=[^[:space:]]' "$PROJECT_DIR/.env"; then
  export MCU_TURN_SECRET=check-compose-placeholder
fi

fail() { echo "check-compose: $*" >&2; exit 1; }

# --- Pick a validator ------------------------------------------------------------
MODE=""
PY=""
if docker compose version >/dev/null 2>&1; then
  MODE=docker
  docker compose -f "$FILE" --project-directory "$PROJECT_DIR" config -q \
    || fail "docker compose config rejected $FILE"
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
  [ -n "$PY" ] || fail "python3 is needed for the invariant checks"
else
  for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' >/dev/null 2>&1; then
      PY="$candidate"; break
    fi
  done
  if [ -z "$PY" ]; then
    echo "check-compose: no 'docker compose' and no PyYAML; installing PyYAML" >&2
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-yaml >&2 \
        || { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-yaml >&2; } \
        || true
      if /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1; then PY=/usr/bin/python3; fi
    fi
    if [ -z "$PY" ] && command -v python3 >/dev/null 2>&1; then
      python3 -m pip install --quiet --user pyyaml >&2 || true
      if python3 -c 'import yaml' >/dev/null 2>&1; then PY=python3; fi
    fi
    [ -n "$PY" ] || fail "cannot validate: neither 'docker compose' nor Python with PyYAML is available"
  fi
  MODE=yaml
fi

# --- Invariants ------------------------------------------------------------------
CHECKER=$(cat <<'PYEOF'
import ipaddress
import json
import os
import re
import shlex
import sys

mode, compose_file, project_dir, print_env = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
errors = []


def err(msg):
    errors.append(msg)


class TemplateError(Exception):
    pass


def load_dotenv(path):
    env = {}
    if not os.path.isfile(path):
        return env
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            key = key.strip()
            if key.startswith("export "):
                key = key[len("export "):].strip()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            env[key] = value
    return env


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(s, env):
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err},
    ${VAR?err}, ${VAR:+alt}, ${VAR+alt}, $VAR and $$, with nesting."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "$":
            out.append(c)
            i += 1
        elif s.startswith("$$", i):
            out.append("$")
            i += 2
        elif s.startswith("${", i):
            depth, j = 0, i
            while j < len(s):
                if s.startswith("${", j):
                    depth += 1
                    j += 2
                    continue
                if s[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            else:
                raise TemplateError(f"unclosed '${{' in {s!r}")
            out.append(expand(s[i + 2:j], env, s))
            i = j + 1
        else:
            m = NAME.match(s, i + 1)
            if not m:
                raise TemplateError(f"invalid '$' in {s!r} (write $$ for a literal $)")
            out.append(env.get(m.group(0), ""))
            i = m.end()
    return "".join(out)


def expand(body, env, whole):
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", body, re.S)
    if not m:
        raise TemplateError(f"invalid substitution '${{{body}}}' in {whole!r}")
    name, op, arg = m.group(1), m.group(2), m.group(3) or ""
    value = env.get(name)
    if op is None:
        return value or ""
    present = value is not None and (value != "" or not op.startswith(":"))
    if op.endswith("-"):
        return value if present else interpolate(arg, env)
    if op.endswith("?"):
        if not present:
            raise TemplateError(f"required variable {name} is missing a value: {interpolate(arg, env)}")
        return value
    return interpolate(arg, env) if present else ""  # + and :+


def interpolate_tree(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(x, env) for x in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def load():
    if mode == "docker":
        return json.load(sys.stdin)
    import yaml

    with open(compose_file, encoding="utf-8") as f:
        try:
            doc = yaml.safe_load(f)
        except yaml.YAMLError as e:
            print(f"check-compose: {compose_file}: invalid YAML: {e}", file=sys.stderr)
            sys.exit(1)
    if not isinstance(doc, dict):
        print(f"check-compose: {compose_file}: not a mapping", file=sys.stderr)
        sys.exit(1)
    env = load_dotenv(os.path.join(project_dir, ".env"))
    env.update(os.environ)  # the shell environment wins over .env, as in Compose
    try:
        return interpolate_tree(doc, env)
    except TemplateError as e:
        print(f"check-compose: {compose_file}: {e}", file=sys.stderr)
        sys.exit(1)


def as_env(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value if "=" in str(item) else None
        return out
    if isinstance(env, dict):
        return {str(k): (None if v is None else str(v)) for k, v in env.items()}
    err("environment must be a mapping or a list")
    return {}


def port_range(text):
    text = str(text)
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return [int(text)]


def as_ports(service, name):
    """(host_port or None, container_port, protocol) for every published port."""
    out = []
    for p in service.get("ports") or []:
        try:
            if isinstance(p, dict):
                proto = p.get("protocol", "tcp")
                targets = port_range(p["target"])
                hosts = port_range(p["published"]) if p.get("published") not in (None, "") else [None] * len(targets)
            else:
                text, _, proto = str(p).partition("/")
                proto = proto or "tcp"
                parts = text.rsplit(":", 2)
                targets = port_range(parts[-1])
                hosts = port_range(parts[-2]) if len(parts) >= 2 and parts[-2] else [None] * len(targets)
            if len(hosts) != len(targets):
                err(f"{name}: port mapping {p!r}: host and container ranges differ in size")
                continue
            out.extend(zip(hosts, targets, [proto] * len(targets)))
        except (KeyError, ValueError):
            err(f"{name}: cannot parse port mapping {p!r}")
    return set(out)


def as_mounts(service):
    """(type, source, target, read_only) for every mount."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            out.append((v.get("type"), str(v.get("source", "")), str(v.get("target", "")), bool(v.get("read_only"))))
        else:
            parts = str(v).split(":")
            source, target = parts[0], parts[1] if len(parts) > 1 else parts[0]
            opts = parts[2].split(",") if len(parts) > 2 else []
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            out.append((kind, source, target, "ro" in opts))
    return out


def as_list(value):
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(x) for x in value]


def flag_values(args, flag):
    values, prefix = [], f"--{flag}="
    for i, a in enumerate(args):
        if a.startswith(prefix):
            values.append(a[len(prefix):])
        elif a == f"--{flag}" and i + 1 < len(args):
            values.append(args[i + 1])
    return values


def conf_int(conf_text, key):
    m = re.search(rf"^\s*{re.escape(key)}\s*=\s*(\d+)\s*$", conf_text, re.M)
    return int(m.group(1)) if m else None


doc = load()
services = doc.get("services") or {}
mcu, turn = services.get("mcu"), services.get("turn")
if not isinstance(mcu, dict):
    err("service 'mcu' is missing")
if not isinstance(turn, dict):
    err("service 'turn' is missing")
if errors:
    for e in errors:
        print(f"check-compose: {e}", file=sys.stderr)
    sys.exit(1)

# --- mcu -------------------------------------------------------------------------
env = as_env(mcu)
for required in ("MCU_LISTEN", "MCU_UDP_PORT", "MCU_PUBLIC_IP", "MCU_RECORDINGS_DIR", "MCU_TURN_SECRET"):
    if required not in env:
        err(f"mcu: environment variable {required} is not set")
if not (mcu.get("build") or mcu.get("image")):
    err("mcu: neither build nor image")
if not mcu.get("restart"):
    err("mcu: no restart policy")
if not mcu.get("healthcheck") or mcu["healthcheck"].get("disable"):
    err("mcu: no healthcheck")
deps = mcu.get("depends_on") or []
if "turn" not in (deps if isinstance(deps, (list, dict)) else []):
    err("mcu: does not depend on turn")

mcu_ports = as_ports(mcu, "mcu")
listen_port = None
if env.get("MCU_LISTEN"):
    try:
        listen_port = int(env["MCU_LISTEN"].rsplit(":", 1)[1])
    except (IndexError, ValueError):
        err(f"mcu: MCU_LISTEN={env['MCU_LISTEN']!r} is not HOST:PORT")
if listen_port is not None and not any(c == listen_port and pr == "tcp" and h for h, c, pr in mcu_ports):
    err(f"mcu: the HTTP port {listen_port}/tcp (MCU_LISTEN) is not published")
udp_port = None
try:
    udp_port = int(env.get("MCU_UDP_PORT") or "")
except ValueError:
    err(f"mcu: MCU_UDP_PORT={env.get('MCU_UDP_PORT')!r} is not a port number")
if udp_port is not None:
    if udp_port == 0:
        err("mcu: MCU_UDP_PORT must be a fixed port (not 0) to be published")
    elif (udp_port, udp_port, "udp") not in mcu_ports:
        err(f"mcu: MCU_UDP_PORT {udp_port}/udp is not published under the same port number")

rec_dir = env.get("MCU_RECORDINGS_DIR")
top_volumes = doc.get("volumes") or {}
if "recordings" not in top_volumes:
    err("named volume 'recordings' is not declared")
if not any(kind == "volume" and src == "recordings" and tgt == rec_dir for kind, src, tgt, _ in as_mounts(mcu)):
    err(f"mcu: volume 'recordings' is not mounted at MCU_RECORDINGS_DIR ({rec_dir})")

mcu_addresses = []
for net_name, net in (mcu.get("networks") or {}).items() if isinstance(mcu.get("networks"), dict) else []:
    if isinstance(net, dict) and net.get("ipv4_address"):
        addr = net["ipv4_address"]
        mcu_addresses.append(addr)
        subnets = [c.get("subnet") for c in (((doc.get("networks") or {}).get(net_name) or {}).get("ipam") or {}).get("config") or []]
        try:
            if not any(ipaddress.ip_address(addr) in ipaddress.ip_network(s) for s in subnets if s):
                err(f"mcu: ipv4_address {addr} is outside the subnet of network '{net_name}' ({subnets})")
        except ValueError as e:
            err(f"mcu: network '{net_name}': {e}")

# --- turn ------------------------------------------------------------------------
image = str(turn.get("image") or "")
if not image.startswith("coturn/coturn:") or image.endswith(":latest"):
    err(f"turn: image {image!r} is not a pinned coturn/coturn tag")
args = as_list(turn.get("entrypoint")) + as_list(turn.get("command"))
conf_targets = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-c"]
conf_mounts = [(src, tgt, ro) for kind, src, tgt, ro in as_mounts(turn) if kind == "bind" and tgt in conf_targets]
if not conf_targets:
    err("turn: no '-c CONFIG' in its command")
elif not conf_mounts:
    err(f"turn: the config file {conf_targets[0]} is not bind-mounted")
conf_text = ""
for src, tgt, ro in conf_mounts:
    if not ro:
        err(f"turn: {tgt} is not mounted read-only")
    path = src if os.path.isabs(src) else os.path.normpath(os.path.join(project_dir, src))
    if not path.endswith(os.path.join("deploy", "turnserver.conf")):
        err(f"turn: mounts {src} as its config, expected deploy/turnserver.conf")
    if not os.path.isfile(path):
        err(f"turn: config file {path} does not exist")
    else:
        with open(path, encoding="utf-8") as f:
            conf_text = f.read()

secrets = flag_values(args, "static-auth-secret")
if len(secrets) != 1:
    err("turn: exactly one --static-auth-secret expected on its command line")
elif secrets[0] != env.get("MCU_TURN_SECRET"):
    err("turn: --static-auth-secret differs from the mcu's MCU_TURN_SECRET")
if not flag_values(args, "external-ip"):
    err("turn: no --external-ip")
allowed = flag_values(args, "allowed-peer-ip")
for addr in mcu_addresses:
    if addr not in allowed:
        err(f"turn: the mcu's address {addr} is not an --allowed-peer-ip")
if conf_text:
    if re.search(r"^\s*static-auth-secret\s*=", conf_text, re.M):
        err("turnserver.conf must not contain static-auth-secret (it is passed on the command line)")
    if not re.search(r"^\s*use-auth-secret\s*$", conf_text, re.M):
        err("turnserver.conf: use-auth-secret is not set")

turn_ports = as_ports(turn, "turn")
listening = (conf_int(conf_text, "listening-port") if conf_text else None) or 3478
for proto in ("udp", "tcp"):
    if (listening, listening, proto) not in turn_ports:
        err(f"turn: {listening}/{proto} is not published under the same port number")
lo, hi = (conf_int(conf_text, "min-port"), conf_int(conf_text, "max-port")) if conf_text else (None, None)
if lo is None or hi is None:
    err("turnserver.conf: min-port/max-port are not set")
else:
    relay = {(h, c) for h, c, p in turn_ports if p == "udp" and c != listening}
    wanted = {(p, p) for p in range(lo, hi + 1)}
    if relay != wanted:
        err(f"turn: published relay ports do not match min-port..max-port ({lo}-{hi}) of turnserver.conf")

# --- the cluster profile -------------------------------------------------------------
for name, node in services.items():
    if name == "mcu" or not isinstance(node, dict) or "cluster" not in (node.get("profiles") or []):
        continue
    if name == "redis" or str(node.get("image") or "").startswith("redis:"):
        if str(node.get("image") or "").endswith(":latest"):
            err(f"{name}: image is not pinned")
        continue
    node_env = as_env(node)
    for required in ("MCU_REDIS_URL", "MCU_NODE_URL", "MCU_UDP_PORT", "MCU_LISTEN"):
        if not node_env.get(required):
            err(f"{name}: {required} is not set (a cluster node)")
    ports = as_ports(node, name)
    try:
        node_udp = int(node_env.get("MCU_UDP_PORT") or "")
        if node_udp == udp_port:
            err(f"{name}: its MCU_UDP_PORT {node_udp} is the mcu's")
        if (node_udp, node_udp, "udp") not in ports:
            err(f"{name}: MCU_UDP_PORT {node_udp}/udp is not published under the same port number")
    except ValueError:
        err(f"{name}: MCU_UDP_PORT is not a port number")
    node_http = int(str(node_env.get("MCU_LISTEN", ":0")).rsplit(":", 1)[1] or 0)
    if not any(c == node_http and p == "tcp" and h for h, c, p in ports):
        err(f"{name}: its HTTP port {node_http}/tcp is not published")
    if not str(node_env.get("MCU_NODE_URL", "")).endswith(f":{node_http}"):
        err(f"{name}: MCU_NODE_URL does not name its published HTTP port {node_http}")
    for net in (node.get("networks") or {}).values() if isinstance(node.get("networks"), dict) else []:
        if isinstance(net, dict) and net.get("ipv4_address") and net["ipv4_address"] not in allowed:
            err(f"turn: the address of {name} ({net['ipv4_address']}) is not an --allowed-peer-ip")

if errors:
    for e in errors:
        print(f"check-compose: {e}", file=sys.stderr)
    sys.exit(1)
if print_env:
    for name in sorted(n for n in env if n.startswith("MCU_")):
        print(name)
PYEOF
)

if [ "$MODE" = docker ]; then
  docker compose -f "$FILE" --project-directory "$PROJECT_DIR" config --format json \
    | "$PY" -c "$CHECKER" docker "$FILE" "$PROJECT_DIR" "$PRINT_ENV"
else
  "$PY" -c "$CHECKER" yaml "$FILE" "$PROJECT_DIR" "$PRINT_ENV" </dev/null
fi
echo "check-compose: $FILE is valid ($MODE)" >&2
