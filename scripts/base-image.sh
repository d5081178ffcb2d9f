#!/usr/bin/env bash
# Build clipper/base:bookworm offline from Debian's packages (no image can be pulled here). Cached: skips when
# the image exists. Includes redis-server so one runtime image can also run a cluster's Redis.
set -euo pipefail

IMAGE=${CLIPPER_BASE_IMAGE:-clipper/base:bookworm}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "base-image: $IMAGE exists"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

DIR=$(mktemp -d /var/tmp/clipper-rootfs.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
echo "base-image: debootstrap $SUITE into $DIR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,redis-server \
  "$SUITE" "$DIR" "$MIRROR" >"$DIR.log" 2>&1 || { tail -n 40 "$DIR.log" >&2; exit 1; }
rm -f "$DIR.log"
# Slim the tree: package lists and caches are not needed in containers.
rm -rf "$DIR"/var/cache/apt/archives/*.deb "$DIR"/var/lib/apt/lists/* "$DIR"/usr/share/doc/* "$DIR"/usr/share/man/*
tar -C "$DIR" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "base-image: built $IMAGE"
