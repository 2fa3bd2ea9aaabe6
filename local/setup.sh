#!/usr/bin/env bash
# Everything from scratch, idempotent: system packages (Java 17, Maven) if missing, the Python
# venv with pinned packages, and the JVM artifacts from Maven Central into .stack/lib.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)

need_apt=()
command -v javac >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v python3.11 >/dev/null 2>&1 || need_apt+=(python3.11 python3.11-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  if [ "$(id -u)" != 0 ]; then echo "setup: need root (or sudo) to install ${need_apt[*]}" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
java_major=$(java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]}')
if [ "${java_major:-0}" -lt 17 ]; then echo "setup: Java 17+ required, found ${java_major}" >&2; exit 1; fi

PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  step "python venv (.venv) with $($PY --version)"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import pyflink, river, cassandra, fastavro, confluent_kafka, pytest, hypothesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ] || [ constraints.txt -nt .venv/.installed ]; then
  step "pip install (pinned by pyproject.toml + constraints.txt; the Flink wheels are ~400 MB)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints.txt -e ".[dev]"
  touch .venv/.installed
fi
step "JVM artifacts from Maven Central into .stack/lib (Kafka broker, Cassandra, Flink Kafka connector, Prometheus reporter)"
.venv/bin/python local/stack.py fetch
chmod +x .venv/lib/python3.11/site-packages/pyflink/bin/* 2>/dev/null || true
echo
echo "setup done in $(( $(date +%s) - t0 ))s"
