#!/usr/bin/env bash
# Make a Docker engine answer on this machine: install docker.io if missing, start dockerd if not running.
# Idempotent. No default bridge (docker0 would take a private range) and no iptables rules; user-defined
# networks, if any, get addresses from 198.18.0.0/16 (benchmark range, never private-range) and stay on
# this machine. Clusters use host networking by default, bound to 127.0.0.1.
set -euo pipefail

LOG=${DOCKERD_LOG:-/var/log/clipper-dockerd.log}

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-registry >/dev/null 2>&1; then
  # docker-registry: Debian's registry, for the tests that push and pull model images on 127.0.0.1.
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "docker-engine: dockerd or docker-registry is missing and there is no apt-get to install them" >&2
    exit 1
  fi
  echo "docker-engine: installing docker.io docker-registry"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io iptables docker-registry >/dev/null
fi

if docker info >/dev/null 2>&1; then
  echo "docker-engine: engine already answering"
  exit 0
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  # A socket left by a containerd that died makes dockerd dial it instead of starting its own.
  if [ -S /run/containerd/containerd.sock ] && ! pgrep -x containerd >/dev/null 2>&1; then
    rm -f /run/containerd/containerd.sock /run/containerd/containerd.sock.ttrpc
  fi
  echo "docker-engine: starting dockerd (log: $LOG)"
  # Its own session, so that the engine outlives the shell (and process group) that started it.
  setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
    --default-address-pool base=198.18.0.0/16,size=24 >>"$LOG" 2>&1 < /dev/null &
  started=$!
fi

for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    echo "docker-engine: ready ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  if [ -n "${started:-}" ] && ! kill -0 "$started" 2>/dev/null; then
    echo "docker-engine: dockerd exited; last log lines:" >&2
    tail -n 30 "$LOG" >&2 || true
    exit 1
  fi
  sleep 0.5
done
echo "docker-engine: dockerd did not answer within 60 s; last log lines:" >&2
tail -n 30 "$LOG" >&2 || true
exit 1
